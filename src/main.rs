//! The `users-gateway` binary: arguments, telemetry, build, serve. No logic.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use users_gateway::app::App;
use users_gateway::config::{process_env, Config, LogFormat};
use users_gateway::sandbox::{Fault, Sandbox, SandboxOptions};
use users_gateway::telemetry;

/// mimalloc: measured faster than glibc's malloc on the cache-hit path (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3's `mi_option_purge_delay` (its `mimalloc.h` enum; the -sys crate names only the
/// older options). Its default, 1000 ms, keeps the memory a cold full read frees resident
/// for a second, so that read's peak RSS stood 15–25 MiB above the cache bound it keeps
/// (docs/BENCHMARKS.md, "A tenant larger than the cache").
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Hand freed memory back to the OS at once, unless the operator set `MIMALLOC_PURGE_DELAY`.
fn purge_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options with atomics.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
}

#[derive(Parser)]
#[command(
    name = "users-gateway",
    version,
    about = "One normalized GET /users over Thought Industries and TapIntoSafety"
)]
struct Cli {
    /// Serve the gateway over the built-in sandbox upstreams (no network, no config needed).
    #[arg(long)]
    demo: bool,
    /// A TOML config file (SPEC §2); the environment wins over it.
    #[arg(long, value_name = "FILE")]
    config: Option<String>,
    /// With --demo: latency each sandbox answer adds, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    sandbox_latency_ms: u64,
    /// With --demo: the sandbox's dataset (default: the documented demo dataset).
    #[command(flatten)]
    sandbox_data: DataArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// The sandbox's dataset, for tenants of realistic size (`bench/run.sh`). Unset, each keeps
/// the documented demo dataset (1,250 TI users at 40 a page, 730 TIS users, plain records).
#[derive(clap::Args, Debug, Clone, Default)]
struct DataArgs {
    /// Thought Industries users in the sandbox [default: 1250].
    #[arg(long = "sandbox-ti-users", visible_alias = "ti-users", value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    ti_users: Option<u32>,
    /// TapIntoSafety users in the sandbox [default: 730].
    #[arg(long = "sandbox-tis-users", visible_alias = "tis-users", value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    tis_users: Option<u32>,
    /// Users per Thought Industries page (TI's `pageInfo.perPage`) [default: 40].
    #[arg(long = "sandbox-ti-page-size", visible_alias = "ti-page-size", value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    ti_page_size: Option<u32>,
    /// Pads each Thought Industries record with more of TI's documented fields (addresses,
    /// refs, customFields, purchased courses, a longer bio) to about this many bytes of JSON,
    /// deterministically from the seed; the normalized fields stay the same [default: plain
    /// records, about 600 bytes].
    #[arg(long = "sandbox-ti-record-bytes", visible_alias = "ti-record-bytes", value_name = "BYTES", value_parser = clap::value_parser!(u32).range(0..=1_048_576))]
    ti_record_bytes: Option<u32>,
}

impl DataArgs {
    fn apply(&self, mut options: SandboxOptions) -> SandboxOptions {
        if let Some(n) = self.ti_users {
            options.ti_users = n as usize;
        }
        if let Some(n) = self.tis_users {
            options.tis_users = n as usize;
        }
        if let Some(n) = self.ti_page_size {
            options.ti_page_size = n as usize;
        }
        if let Some(bytes) = self.ti_record_bytes {
            options.ti_record_bytes = Some(bytes as usize);
        }
        options
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve the two simulated provider APIs alone, for frontend work or a configured gateway.
    Sandbox {
        #[arg(long, default_value = "127.0.0.1:9101")]
        ti_addr: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:9102")]
        tis_addr: SocketAddr,
        /// Latency each answer adds, in milliseconds.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Fault for Thought Industries: none, an HTTP status (500, 401, 429…), hang, malformed,
        /// wrong-shape, oversized, redirect, reset, trickle, loose-filter[=<from_page>], repeat-ids,
        /// ignore-page, shifting-total, missing-id[=absent], retry-after[-503]=<value>,
        /// hang-then-ok[=<n>].
        ///
        /// Transport faults: an HTTP status is answered with a small JSON body (Retry-After: 1 on
        /// 429 and 503); hang never answers; malformed is not JSON; wrong-shape is JSON of another
        /// shape; oversized is a 32 MiB body; redirect is a 302; reset cuts the body midway;
        /// trickle sends one byte every 50 ms.
        ///
        /// Data faults, a 200 of the documented shape that lies: loose-filter drops the pushed-down
        /// filter (TI role; TIS email, orgId) from page <from_page> on (default 2), those pages cut
        /// from the unfiltered list and reporting its total; repeat-ids starts every page from 2 on
        /// with the last user of the page before; ignore-page answers page 1 (currentPage / page 1)
        /// whatever was asked; shifting-total reports the true total on page 1 and 5 more on later
        /// pages; missing-id sends the first user of page 2 with "id": "" (missing-id=absent:
        /// without an id key).
        ///
        /// retry-after=<value> answers 429 (retry-after-503=<value>: 503) with Retry-After: <value>
        /// verbatim (e.g. 10000000000000000000, -1, an HTTP-date, garbage); hang-then-ok=<n> hangs
        /// the first n requests (default 1), then answers normally.
        #[arg(long, default_value = "none")]
        ti_fault: Fault,
        /// Fault for TapIntoSafety (same values as --ti-fault).
        #[arg(long, default_value = "none")]
        tis_fault: Fault,
        /// Seed of the generated users.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Print the OpenAPI document (regenerates openapi/openapi.json).
    Openapi,
    /// Print the effective configuration, secrets as ***.
    PrintConfig,
}

#[tokio::main]
async fn main() -> ExitCode {
    purge_freed_memory_at_once();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            report_failure(&message);
            ExitCode::FAILURE
        }
    }
}

/// In JSON log mode every output line is JSON, a failure to start included; the mode is
/// taken from the environment when the config itself could not be loaded.
fn report_failure(message: &str) {
    let json_wanted = process_env("GATEWAY_LOG_FORMAT").is_some_and(|format| format.trim() == "json");
    if telemetry::json_logs() || json_wanted {
        telemetry::init_tracing(LogFormat::Json);
        tracing::error!(error = %message, "users-gateway cannot run");
    } else {
        eprintln!("users-gateway: {message}");
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Some(Command::Openapi) => {
            print!("{}", users_gateway::http::openapi::document_json());
            Ok(())
        }
        Some(Command::PrintConfig) => {
            let config = Config::load(&process_env, cli.config.as_deref(), None).map_err(|e| e.to_string())?;
            print!("{config}");
            Ok(())
        }
        Some(Command::Sandbox {
            ti_addr,
            tis_addr,
            latency_ms,
            ti_fault,
            tis_fault,
            seed,
            data,
        }) => {
            let options = data.apply(SandboxOptions {
                seed,
                ti_addr,
                tis_addr,
                latency: Duration::from_millis(latency_ms),
                ..SandboxOptions::default()
            });
            run_sandbox(options, ti_fault, tis_fault).await
        }
        None => run_gateway(cli).await,
    }
}

async fn run_gateway(cli: Cli) -> Result<(), String> {
    let sandbox = if cli.demo {
        let options = cli.sandbox_data.apply(SandboxOptions {
            latency: Duration::from_millis(cli.sandbox_latency_ms),
            ..SandboxOptions::default()
        });
        Some(
            Sandbox::start(options)
                .await
                .map_err(|e| format!("cannot start the sandbox: {e}"))?,
        )
    } else {
        None
    };
    let config = Config::load(
        &process_env,
        cli.config.as_deref(),
        sandbox.as_ref().map(Sandbox::sources),
    )
    .map_err(|e| e.to_string())?;
    telemetry::init_tracing(config.log_format);
    let app = App::build(&config).map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .map_err(|e| format!("cannot listen on {} (set GATEWAY_LISTEN_ADDR): {e}", config.listen_addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(%addr, sources = config.sources.len(), "users-gateway listening");
    print_banner(config.log_format, addr, sandbox.as_ref());
    app.serve(listener, shutdown_signal()).await.map_err(|e| e.to_string())
}

/// Where to look and what to try. In JSON log mode it is log events, so that every line of
/// output stays JSON; otherwise plain lines for a person.
fn print_banner(format: LogFormat, addr: SocketAddr, sandbox: Option<&Sandbox>) {
    let docs = format!("http://{addr}/docs");
    let try_curl = format!("curl -i 'http://{addr}/users?per_page=5'");
    match format {
        LogFormat::Json => {
            if let Some(sandbox) = sandbox {
                tracing::info!(
                    thoughtindustries = %sandbox.ti.base_url,
                    tapintosafety = %sandbox.tis.base_url,
                    "users-gateway demo: sandbox upstreams"
                );
            }
            tracing::info!(url = %docs, "Swagger UI");
            tracing::info!(command = %try_curl, "Try");
        }
        LogFormat::Pretty => {
            if let Some(sandbox) = sandbox {
                println!(
                    "users-gateway demo: sandbox upstreams on {} (thoughtindustries) and {} (tapintosafety)",
                    sandbox.ti.base_url, sandbox.tis.base_url
                );
            }
            println!("Swagger UI: {docs}");
            println!("Try:        {try_curl}");
        }
    }
}

async fn run_sandbox(options: SandboxOptions, ti_fault: Fault, tis_fault: Fault) -> Result<(), String> {
    telemetry::init_tracing(users_gateway::config::LogFormat::Pretty);
    let (ti_users, ti_page_size, tis_users) = (options.ti_users, options.ti_page_size, options.tis_users);
    let ti_records = options.ti_record_bytes.map_or(String::new(), |bytes| {
        format!(", records padded to about {bytes} bytes")
    });
    let sandbox = Sandbox::start(options)
        .await
        .map_err(|e| format!("cannot start the sandbox: {e}"))?;
    sandbox.ti.control.set_fault(ti_fault);
    sandbox.tis.control.set_fault(tis_fault);
    let (ti, tis) = (&sandbox.ti, &sandbox.tis);
    println!(
        "Thought Industries sandbox: {}  key: {}  ({ti_users} users, {ti_page_size} per page{ti_records})",
        ti.base_url, ti.api_key
    );
    println!(
        "TapIntoSafety sandbox:      {}  key: {}  ({tis_users} users, 50 per page)",
        tis.base_url, tis.api_key
    );
    println!("Point a gateway at it:");
    println!(
        "  THOUGHTINDUSTRIES_BASE_URL={} THOUGHTINDUSTRIES_API_KEY={} TAPINTOSAFETY_BASE_URL={} TAPINTOSAFETY_API_KEY={} cargo run --release",
        ti.base_url.as_str().trim_end_matches('/'),
        ti.api_key,
        tis.base_url.as_str().trim_end_matches('/'),
        tis.api_key
    );
    shutdown_signal().await;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_flags_reach_the_sandbox_options_and_default_to_the_demo_dataset() {
        let cli = Cli::try_parse_from(["users-gateway", "--demo"]).unwrap();
        let options = cli.sandbox_data.apply(SandboxOptions::default());
        assert_eq!(
            (
                options.ti_users,
                options.tis_users,
                options.ti_page_size,
                options.ti_record_bytes
            ),
            (1250, 730, 40, None)
        );
        let cli = Cli::try_parse_from([
            "users-gateway",
            "--demo",
            "--sandbox-ti-users",
            "20000",
            "--sandbox-tis-users",
            "10000",
            "--sandbox-ti-page-size",
            "100",
            "--sandbox-ti-record-bytes",
            "3500",
        ])
        .unwrap();
        let options = cli.sandbox_data.apply(SandboxOptions::default());
        assert_eq!(
            (
                options.ti_users,
                options.tis_users,
                options.ti_page_size,
                options.ti_record_bytes
            ),
            (20000, 10000, 100, Some(3500))
        );
        let cli = Cli::try_parse_from(["users-gateway", "sandbox", "--ti-users", "5", "--ti-page-size", "7"]).unwrap();
        let Some(Command::Sandbox { data, .. }) = cli.command else {
            panic!("the sandbox subcommand");
        };
        let options = data.apply(SandboxOptions::default());
        assert_eq!((options.ti_users, options.ti_page_size), (5, 7));
        assert!(Cli::try_parse_from(["users-gateway", "--demo", "--sandbox-ti-page-size", "0"]).is_err());
    }
}

#[cfg(test)]
mod allocator_tests {
    /// Option 15 is purge_delay in the mimalloc linked here: its default is that option's
    /// 1000 ms (a mimalloc update that renumbers the options fails this, not production).
    #[test]
    fn option_15_is_mimallocs_purge_delay() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads one integer option.
        let delay = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(delay, 1000);
    }
}
