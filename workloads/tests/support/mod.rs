//! What the workload tests share (this crate's and the `ros` CLI test,
//! which includes this file): a `test_images::LocalRegistry` over plain
//! HTTP, and the busybox image the tests run, built with `test-images`
//! and pushed to it.
// Each test crate uses a different part of this module.
#![allow(dead_code)]

use test_images::{Config, Image, Layer};

/// Users the image knows by name (`--user nobody`).
const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

/// `test_images::LocalRegistry` (its `address`, `port`... through
/// `Deref`), with the workload tests' image.
#[derive(Debug)]
pub struct LocalRegistry(test_images::LocalRegistry);

impl std::ops::Deref for LocalRegistry {
    type Target = test_images::LocalRegistry;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl LocalRegistry {
    pub fn start() -> Self {
        Self(test_images::LocalRegistry::start())
    }

    /// Pushes busybox (every applet linked; `sh` as the command, a
    /// passwd with `nobody`, an empty `/data`) as `test/busybox:<tag>`;
    /// returns the reference. Async for the callers' sake: the push is a
    /// few blocking requests to a registry in another process.
    pub async fn push_busybox(&self, tag: &str) -> String {
        self.push_busybox_as(tag, None).await
    }

    /// The same, its config's `User` set.
    pub async fn push_busybox_as(&self, tag: &str, user: Option<&str>) -> String {
        let layer = Layer::busybox(&[("etc/passwd", PASSWD), ("etc/group", GROUP), ("data/", "")]);
        let config = Config {
            user: user.map(str::to_string),
            ..Config::new(&["sh"])
        };
        self.0
            .push("test/busybox", tag, &Image::new(vec![layer], &config));
        self.0.reference("test/busybox", tag)
    }
}
