//! The key table (`ros config keys`, suggestions, warnings) must list
//! exactly the fields the typed schema accepts, section by section.

use std::cell::RefCell;
use std::rc::Rc;

use os_config::schema::keys;
use os_config::schema::{
    CloudConfig, CloudInit, Cluster, Dns, EngineConfig, InterfaceConfig, Network, Rancher, Service,
    Ssh, State, Syslog, SystemContainerd, WriteFile,
};
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

/// A deserializer that records the field list serde's derive hands it.
struct FieldsOf(Rc<RefCell<Vec<&'static str>>>);

impl<'de> Deserializer<'de> for FieldsOf {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.borrow_mut().extend(fields);
        Err(de::Error::custom("recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

fn fields_of<T: DeserializeOwned>() -> Vec<String> {
    let fields = Rc::new(RefCell::new(Vec::new()));
    let _ = T::deserialize(FieldsOf(Rc::clone(&fields)));
    let mut fields: Vec<String> = fields.borrow().iter().map(|f| (*f).to_owned()).collect();
    fields.sort();
    fields
}

fn table_children(parent: &str) -> Vec<String> {
    let mut children = keys::children(parent);
    children.sort();
    children
}

#[test]
fn every_section_of_the_table_matches_its_struct() {
    let sections: Vec<(&str, Vec<String>)> = vec![
        ("", fields_of::<CloudConfig>()),
        ("write_files[]", fields_of::<WriteFile>()),
        ("rancher", fields_of::<Rancher>()),
        ("rancher.network", fields_of::<Network>()),
        ("rancher.network.dns", fields_of::<Dns>()),
        (
            "rancher.network.interfaces.<name>",
            fields_of::<InterfaceConfig>(),
        ),
        ("rancher.services.<name>", fields_of::<Service>()),
        ("rancher.state", fields_of::<State>()),
        ("rancher.ssh", fields_of::<Ssh>()),
        ("rancher.syslog", fields_of::<Syslog>()),
        ("rancher.docker", fields_of::<EngineConfig>()),
        ("rancher.system_docker", fields_of::<EngineConfig>()),
        ("rancher.system_containerd", fields_of::<SystemContainerd>()),
        ("rancher.cloud_init", fields_of::<CloudInit>()),
        ("rancher.cluster", fields_of::<Cluster>()),
    ];
    for (parent, fields) in sections {
        assert!(!fields.is_empty(), "no fields recorded for `{parent}`");
        assert_eq!(table_children(parent), fields, "key table under `{parent}`");
    }
}

#[test]
fn wildcard_sections_take_any_name() {
    assert_eq!(table_children("rancher.services"), ["<name>"]);
    assert_eq!(table_children("rancher.network.interfaces"), ["<name>"]);
}
