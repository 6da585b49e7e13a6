//! Real Redis for the integration tests: installs `redis-server` from the system packages when
//! it is missing, and starts one standalone server and a three-master Redis Cluster, each in a
//! temporary directory on free 127.0.0.1 ports. The servers are Drop guards: they are killed
//! and their directories removed when `Servers` is dropped, also when a step fails or panics.
//!
//! The process handling is `smart-fhir-redis`'s `test_server` module, compiled here from the
//! same file, so that the crate's own tests and this command start servers the same way.

use std::process::Command;

#[path = "../../crates/smart-fhir-redis/src/test_server.rs"]
// Public in the crate (the `test-server` feature), not in this one.
#[allow(dead_code, unreachable_pub)]
mod test_server;

use test_server::{RedisCluster, RedisServer};

use crate::util::{run, Result};

/// The servers the integration tests use.
pub(crate) struct Servers {
    pub standalone: RedisServer,
    pub cluster: RedisCluster,
}

impl Servers {
    /// `SMART_FHIR_IT_REDIS_URL` and `SMART_FHIR_IT_REDIS_CLUSTER` (comma-separated node URLs).
    pub(crate) fn env(&self) -> [(&'static str, String); 2] {
        [
            ("SMART_FHIR_IT_REDIS_URL", self.standalone.url()),
            ("SMART_FHIR_IT_REDIS_CLUSTER", self.cluster.urls().join(",")),
        ]
    }
}

fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs `redis-server` and `redis-cli` with apt-get when either is missing.
pub(crate) fn ensure_installed() -> Result<()> {
    if has("redis-server") && has("redis-cli") {
        return Ok(());
    }
    if !has("apt-get") {
        return Err(
            "redis-server is missing and apt-get is not available: install redis-server (7 or \
             later) or valkey-server with redis-server/redis-cli names"
                .to_owned(),
        );
    }
    eprintln!("redis-server is missing: installing it with apt-get");
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "redis-server"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    if has("redis-server") && has("redis-cli") {
        Ok(())
    } else {
        Err("redis-server was installed but cannot be run".to_owned())
    }
}

/// Starts a standalone server only (what `bench storm` needs).
pub(crate) fn start_standalone() -> Result<RedisServer> {
    ensure_installed()?;
    let standalone = RedisServer::start()?;
    eprintln!("redis: standalone at {}", standalone.url());
    Ok(standalone)
}

/// Starts the standalone server and the cluster.
pub(crate) fn start() -> Result<Servers> {
    ensure_installed()?;
    let standalone = RedisServer::start()?;
    let cluster = RedisCluster::start(3)?;
    eprintln!(
        "redis: standalone at {}, cluster at {}",
        standalone.url(),
        cluster.urls().join(" ")
    );
    Ok(Servers {
        standalone,
        cluster,
    })
}
