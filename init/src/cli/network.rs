//! `ros network`: the links, their addresses and DHCP leases, and the
//! routes, as the machine has them now. The configuration is what
//! `ros config get rancher.network` shows.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use clap::Args;

use crate::network::netlink::Netlink;
use crate::network::rtnl::RtNetlink;
use crate::network::status;

/// `ros network`.
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// Directory the status file is under (for tests) [default: /].
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
}

/// Prints the status view.
pub fn run(args: NetworkArgs) -> anyhow::Result<ExitCode> {
    let path = status::status_path(&args.root);
    let file = status::read_status(&path)
        .with_context(|| format!("reading {}", path.display()))?
        .unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (links, addresses, routes) = runtime.block_on(async {
        let netlink = RtNetlink::connect()?;
        anyhow::Ok((
            netlink.links().await?,
            netlink.addresses().await?,
            netlink.routes().await?,
        ))
    })?;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    print!(
        "{}",
        status::render(&links, &addresses, &routes, &file.dhcp, now)
    );
    Ok(ExitCode::SUCCESS)
}
