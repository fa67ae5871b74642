//! A real `redis-server` on a free loopback port, for the replica tests (SPEC §10).
//!
//! Where `redis-server` is missing the tests that need it say so loudly and pass, unless
//! `GATEWAY_TEST_REQUIRE_REDIS=1` (set by `.ci/run`), which turns the skip into a failure.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

fn redis_server_binary() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}

impl RedisServer {
    /// A running server, or `None` (after saying why) when `redis-server` is not installed.
    pub async fn start(test: &str) -> Option<RedisServer> {
        let Some(binary) = redis_server_binary() else {
            let required = std::env::var("GATEWAY_TEST_REQUIRE_REDIS").is_ok_and(|value| value == "1");
            assert!(
                !required,
                "{test}: redis-server is not installed and GATEWAY_TEST_REQUIRE_REDIS=1 forbids skipping"
            );
            eprintln!(
                "\n*** SKIPPED {test}: redis-server not found on PATH. Install it (Debian: \
                 `apt-get install redis-server`) to run the replica tests; .ci/run installs it. ***\n"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut server = RedisServer { port, child: None };
        server.child = Some(spawn(&binary, port));
        server.wait_until_up().await;
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as a crash would) and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn(&redis_server_binary().unwrap(), self.port));
        self.wait_until_up().await;
    }

    /// A client connection, for looking at what the gateway stored.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .expect("redis answers")
    }

    async fn wait_until_up(&self) {
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..500 {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut connection).await;
                if pong.is_ok() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("redis-server did not answer on port {} within 5 s", self.port);
    }
}

fn spawn(binary: &std::path::Path, port: u16) -> Child {
    Command::new(binary)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server starts")
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
