//! Configuration: environment > TOML file (`--config`) > defaults (SPEC §2).
//!
//! Read once at startup into [`Config`], then passed down; nothing else reads the
//! environment. API keys live in [`SecretString`]: redacted in `Debug`, never serialized,
//! printed as `***`.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::model::{ProviderKind, SourceName};

/// Everything the gateway needs to run, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    /// Served in this order; it is also the merge order of `/users` (SPEC §3).
    pub sources: Vec<SourceConfig>,
    pub cache_ttl: Duration,
    pub cache_max_bytes: u64,
    pub upstream_timeout: Duration,
    /// How many requests one source may have in flight at once (protects the upstream).
    pub upstream_concurrency: usize,
    pub upstream_max_body_bytes: usize,
    /// Keys callers must present; empty means no caller auth.
    pub api_keys: Vec<SecretString>,
    pub cors_origins: CorsOrigins,
    pub log_format: LogFormat,
    /// How long past freshness a cached page may stand in for a failing source (RFC 5861).
    pub stale_if_error: Duration,
    /// How long past freshness a cached page is served at once while one background fetch
    /// refreshes it (RFC 5861); zero turns it off.
    pub stale_while_revalidate: Duration,
    /// Send `role` to Thought Industries (lowercased); off for tenants with mixed-case role keys.
    pub ti_role_pushdown: bool,
    /// Ceiling on the upstream pages one query may read from one source.
    pub max_upstream_pages: u64,
    /// Attempts after the first for retryable upstream failures.
    pub upstream_retries: usize,
    pub upstream_backoff: Duration,
    pub upstream_backoff_max: Duration,
    /// Everything one caller request does upstream (attempts, backoff, queueing) ends by then.
    pub request_deadline: Duration,
    /// Consecutive failed page fetches that open a source's circuit; 0 disables the breaker.
    pub breaker_failures: u32,
    pub breaker_cool_down: Duration,
    /// Requests served at once; past it, callers get a 503 problem at once.
    pub max_concurrent_requests: usize,
    /// Exports streaming at once (each also holds one of `max_concurrent_requests`); past it,
    /// a 503 problem at once. Bounds what exports buffer in all.
    pub max_concurrent_exports: usize,
    /// After SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_drain: Duration,
    /// A connection that has not sent a complete request head within this is closed (SPEC §6).
    pub header_read_timeout: Duration,
    /// The Redis replicas share (SPEC §10); `None`: memory only.
    pub redis: Option<RedisConfig>,
}

/// `GATEWAY_REDIS_*`.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// May hold a user and password: a secret.
    pub url: SecretString,
    pub prefix: String,
    /// Bound on each Redis call.
    pub timeout: Duration,
}

/// One upstream instance of a provider.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: SourceName,
    pub provider: ProviderKind,
    pub base_url: Url,
    pub api_key: SecretString,
    /// The source's request budget, shared by replicas through Redis (SPEC §10).
    pub max_rps: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// No CORS headers at all.
    None,
    Any,
    List(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("invalid config file {path}: {reason}")]
    FileSyntax { path: String, reason: String },
    #[error("{name}: {reason}")]
    Invalid { name: String, reason: String },
    #[error(
        "no upstream source configured: set THOUGHTINDUSTRIES_BASE_URL and THOUGHTINDUSTRIES_API_KEY \
         and/or TAPINTOSAFETY_BASE_URL and TAPINTOSAFETY_API_KEY, give --config FILE with [[sources]], \
         or run with --demo to use the built-in sandbox"
    )]
    NoSources,
}

fn invalid(name: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// The TOML file: SPEC §2 settings lower-case without the `GATEWAY_` prefix.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen_addr: Option<String>,
    cache_ttl_secs: Option<u64>,
    cache_max_bytes: Option<u64>,
    upstream_timeout_ms: Option<u64>,
    upstream_concurrency: Option<u64>,
    upstream_max_body_bytes: Option<u64>,
    api_keys: Option<StringList>,
    cors_origins: Option<StringList>,
    log_format: Option<String>,
    stale_if_error_secs: Option<u64>,
    stale_while_revalidate_secs: Option<u64>,
    ti_role_pushdown: Option<bool>,
    max_upstream_pages: Option<u64>,
    upstream_retries: Option<u64>,
    upstream_backoff_ms: Option<u64>,
    upstream_backoff_max_ms: Option<u64>,
    request_deadline_ms: Option<u64>,
    breaker_failures: Option<u64>,
    breaker_cool_down_secs: Option<u64>,
    max_concurrent_requests: Option<u64>,
    max_concurrent_exports: Option<u64>,
    shutdown_drain_secs: Option<u64>,
    header_read_timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "optional_secret")]
    redis_url: Option<SecretString>,
    redis_prefix: Option<String>,
    redis_timeout_ms: Option<u64>,
    #[serde(default)]
    sources: Vec<FileSource>,
}

/// A list given either as a TOML array or as one comma-separated string (as in the env).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringList {
    One(String),
    Many(Vec<String>),
}

impl StringList {
    fn into_items(self) -> Vec<String> {
        match self {
            StringList::One(text) => split_list(&text),
            StringList::Many(items) => items.into_iter().map(|item| item.trim().to_owned()).collect(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSource {
    name: Option<String>,
    provider: String,
    base_url: String,
    #[serde(deserialize_with = "secret_string")]
    api_key: SecretString,
    max_rps: Option<f64>,
}

fn optional_secret<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<SecretString>, D::Error> {
    secret_string(deserializer).map(Some)
}

/// The largest `max_rps`: past it a budget would not be one.
const MAX_RPS: f64 = 1_000_000.0;

fn parse_max_rps(name: &str, text: &str) -> Result<f64, ConfigError> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| invalid(name, format!("{text:?} is not a number")))?;
    check_max_rps(name, value)
}

fn check_max_rps(name: &str, value: f64) -> Result<f64, ConfigError> {
    if value.is_finite() && value > 0.0 && value <= MAX_RPS {
        Ok(value)
    } else {
        Err(invalid(
            name,
            format!("must be a number of requests a second above 0 and at most {MAX_RPS}"),
        ))
    }
}

/// `redis://` or `rediss://` with a host; the URL itself is never quoted (it may hold a password).
fn parse_redis_url(name: &str, url: SecretString) -> Result<SecretString, ConfigError> {
    use secrecy::ExposeSecret;
    let parsed = Url::parse(url.expose_secret().trim()).map_err(|_| invalid(name, "is not a URL"))?;
    if !matches!(parsed.scheme(), "redis" | "rediss") {
        return Err(invalid(name, "must be a redis:// or rediss:// URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(invalid(name, "has no host"));
    }
    Ok(SecretString::from(url.expose_secret().trim().to_owned()))
}

/// Like `SecretString`'s own impl, but an error never quotes the value (toml's would).
fn secret_string<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<SecretString, D::Error> {
    String::deserialize(deserializer)
        .map(SecretString::from)
        .map_err(|_| serde::de::Error::custom("api_key must be a string"))
}

impl fmt::Debug for FileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSource")
            .field("name", &self.name)
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("api_key", &"***")
            .finish()
    }
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Where settings come from; a closure so tests need not touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads the real process environment. A blank value is passed on as it is: `Config::load`
/// treats it as unset, except for `GATEWAY_API_KEYS`, where set-but-blank is an error.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The range a numeric setting must fall in, checked at load time.
///
/// Upper bounds keep arithmetic on the values (`Instant + Duration`, allocation sizes) far
/// from overflow, and catch a unit mistake (seconds given as milliseconds) at startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: u64,
    pub max: u64,
}

impl Bounds {
    fn check(self, name: &str, value: u64) -> Result<u64, ConfigError> {
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(invalid(
                name,
                format!("must be from {} to {}, got {value}", self.min, self.max),
            ))
        }
    }
}

const HOUR_MS: u64 = 3_600_000;
/// Per-attempt timeouts and the request deadline: at most an hour.
pub const TIMEOUT_MS: Bounds = Bounds { min: 1, max: HOUR_MS };
/// One backoff step: at most ten minutes.
pub const BACKOFF_MS: Bounds = Bounds { min: 1, max: 600_000 };
/// Cache freshness and stale windows: at most a day.
pub const WINDOW_SECS: Bounds = Bounds { min: 0, max: 86_400 };
/// Breaker cool-down and shutdown drain: at most an hour.
pub const HOUR_SECS: Bounds = Bounds { min: 0, max: 3_600 };
/// Cache capacity: at most 64 GiB (bodies are memoized in a quarter of it besides).
pub const CACHE_BYTES: Bounds = Bounds { min: 0, max: 64 << 30 };
/// Largest upstream body: 1 KiB to 1 GiB.
pub const BODY_BYTES: Bounds = Bounds {
    min: 1024,
    max: 1 << 30,
};
pub const CONCURRENCY: Bounds = Bounds { min: 1, max: 1024 };
pub const RETRIES: Bounds = Bounds { min: 0, max: 10 };
pub const UPSTREAM_PAGES: Bounds = Bounds { min: 1, max: 100_000 };
pub const BREAKER_FAILURES: Bounds = Bounds { min: 0, max: 10_000 };
pub const CONCURRENT_REQUESTS: Bounds = Bounds { min: 1, max: 65_536 };
/// Header read timeout: longer than ten minutes would let idle connections pile up again.
pub const HEADER_READ_TIMEOUT_MS: Bounds = Bounds { min: 1, max: 600_000 };

/// `GATEWAY_CACHE_TTL_SECS` -> `cache_ttl_secs`: the TOML key of a setting, for errors
/// about a value that came from the file.
fn file_key(env_name: &str) -> String {
    env_name.trim_start_matches("GATEWAY_").to_ascii_lowercase()
}

/// Caller keys: unset means no caller auth; set but holding no key is an error, so a
/// templating slip (`GATEWAY_API_KEYS=""`) cannot silently turn auth off (SPEC §2).
fn load_api_keys(env: EnvLookup<'_>, file_keys: Option<StringList>) -> Result<Vec<SecretString>, ConfigError> {
    let (keys, name) = match env("GATEWAY_API_KEYS") {
        Some(text) => (split_list(&text), "GATEWAY_API_KEYS"),
        None => match file_keys {
            Some(list) => (list.into_items(), "api_keys"),
            None => return Ok(Vec::new()),
        },
    };
    let keys: Vec<SecretString> = keys
        .into_iter()
        .filter(|key| !key.is_empty())
        .map(SecretString::from)
        .collect();
    if keys.is_empty() {
        return Err(invalid(
            name,
            "is set but holds no key: give at least one key, or unset it to turn caller auth off",
        ));
    }
    Ok(keys)
}

impl Config {
    /// Builds the config from the environment and an optional TOML file.
    ///
    /// `fixed_sources` (the `--demo` sandbox) replaces every configured source.
    pub fn load(
        env: EnvLookup<'_>,
        file_path: Option<&str>,
        fixed_sources: Option<Vec<SourceConfig>>,
    ) -> Result<Config, ConfigError> {
        let file = match file_path {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let env_or = |name: &str| env(name).filter(|value| !value.trim().is_empty());

        let listen_addr = match env_or("GATEWAY_LISTEN_ADDR").or(file.listen_addr.clone()) {
            Some(text) => text
                .trim()
                .parse()
                .map_err(|_| invalid("GATEWAY_LISTEN_ADDR", format!("{text:?} is not an address:port")))?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let number = |name: &str, file_value: Option<u64>, default: u64, bounds: Bounds| -> Result<u64, ConfigError> {
            let (value, shown_name) = match env_or(name) {
                Some(text) => {
                    let value = text
                        .trim()
                        .parse::<u64>()
                        .map_err(|_| invalid(name, format!("{text:?} is not a whole number")))?;
                    (value, name.to_owned())
                }
                None => match file_value {
                    Some(value) => (value, file_key(name)),
                    None => (default, name.to_owned()),
                },
            };
            bounds.check(&shown_name, value)
        };
        let cache_ttl = Duration::from_secs(number("GATEWAY_CACHE_TTL_SECS", file.cache_ttl_secs, 60, WINDOW_SECS)?);
        let cache_max_bytes = number(
            "GATEWAY_CACHE_MAX_BYTES",
            file.cache_max_bytes,
            64 * 1024 * 1024,
            CACHE_BYTES,
        )?;
        let upstream_timeout = Duration::from_millis(number(
            "GATEWAY_UPSTREAM_TIMEOUT_MS",
            file.upstream_timeout_ms,
            5000,
            TIMEOUT_MS,
        )?);
        let upstream_concurrency = number(
            "GATEWAY_UPSTREAM_CONCURRENCY",
            file.upstream_concurrency,
            8,
            CONCURRENCY,
        )? as usize;
        let upstream_max_body_bytes = number(
            "GATEWAY_UPSTREAM_MAX_BODY_BYTES",
            file.upstream_max_body_bytes,
            16 * 1024 * 1024,
            BODY_BYTES,
        )? as usize;
        let stale_if_error = Duration::from_secs(number(
            "GATEWAY_STALE_IF_ERROR_SECS",
            file.stale_if_error_secs,
            300,
            WINDOW_SECS,
        )?);
        let stale_while_revalidate = Duration::from_secs(number(
            "GATEWAY_STALE_WHILE_REVALIDATE_SECS",
            file.stale_while_revalidate_secs,
            30,
            WINDOW_SECS,
        )?);

        let max_upstream_pages = number(
            "GATEWAY_MAX_UPSTREAM_PAGES",
            file.max_upstream_pages,
            1000,
            UPSTREAM_PAGES,
        )?;
        let upstream_retries = number("GATEWAY_UPSTREAM_RETRIES", file.upstream_retries, 2, RETRIES)? as usize;
        let upstream_backoff = Duration::from_millis(number(
            "GATEWAY_UPSTREAM_BACKOFF_MS",
            file.upstream_backoff_ms,
            100,
            BACKOFF_MS,
        )?);
        let upstream_backoff_max = Duration::from_millis(number(
            "GATEWAY_UPSTREAM_BACKOFF_MAX_MS",
            file.upstream_backoff_max_ms,
            2000,
            BACKOFF_MS,
        )?);
        let request_deadline = Duration::from_millis(number(
            "GATEWAY_REQUEST_DEADLINE_MS",
            file.request_deadline_ms,
            15_000,
            TIMEOUT_MS,
        )?);
        let breaker_failures = number("GATEWAY_BREAKER_FAILURES", file.breaker_failures, 5, BREAKER_FAILURES)? as u32;
        let breaker_cool_down = Duration::from_secs(number(
            "GATEWAY_BREAKER_COOL_DOWN_SECS",
            file.breaker_cool_down_secs,
            10,
            HOUR_SECS,
        )?);
        let max_concurrent_requests = number(
            "GATEWAY_MAX_CONCURRENT_REQUESTS",
            file.max_concurrent_requests,
            512,
            CONCURRENT_REQUESTS,
        )? as usize;
        let max_concurrent_exports = number(
            "GATEWAY_MAX_CONCURRENT_EXPORTS",
            file.max_concurrent_exports,
            16,
            CONCURRENT_REQUESTS,
        )? as usize;
        let shutdown_drain = Duration::from_secs(number(
            "GATEWAY_SHUTDOWN_DRAIN_SECS",
            file.shutdown_drain_secs,
            30,
            HOUR_SECS,
        )?);
        let header_read_timeout = Duration::from_millis(number(
            "GATEWAY_HEADER_READ_TIMEOUT_MS",
            file.header_read_timeout_ms,
            30_000,
            HEADER_READ_TIMEOUT_MS,
        )?);
        let ti_role_pushdown = match env_or("GATEWAY_TI_ROLE_PUSHDOWN") {
            Some(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => return Err(invalid("GATEWAY_TI_ROLE_PUSHDOWN", "must be true or false")),
            },
            None => file.ti_role_pushdown.unwrap_or(true),
        };

        let api_keys = load_api_keys(env, file.api_keys)?;

        let redis_timeout = Duration::from_millis(number(
            "GATEWAY_REDIS_TIMEOUT_MS",
            file.redis_timeout_ms,
            50,
            TIMEOUT_MS,
        )?);
        let redis_url = match env_or("GATEWAY_REDIS_URL") {
            Some(text) => Some(parse_redis_url("GATEWAY_REDIS_URL", SecretString::from(text))?),
            None => file
                .redis_url
                .map(|url| parse_redis_url("redis_url", url))
                .transpose()?,
        };
        let redis_prefix = env_or("GATEWAY_REDIS_PREFIX")
            .or(file.redis_prefix.clone())
            .unwrap_or_else(|| "users-gateway:".to_owned());
        if redis_prefix.len() > 128 || redis_prefix.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid(
                "GATEWAY_REDIS_PREFIX",
                "must be at most 128 characters, without spaces or control characters",
            ));
        }
        let redis = redis_url.map(|url| RedisConfig {
            url,
            prefix: redis_prefix,
            timeout: redis_timeout,
        });

        let cors_list = match env_or("GATEWAY_CORS_ORIGINS") {
            Some(text) => split_list(&text),
            None => file.cors_origins.map(StringList::into_items).unwrap_or_default(),
        };
        let cors_origins = parse_cors(cors_list)?;

        let log_format = match env_or("GATEWAY_LOG_FORMAT").or(file.log_format.clone()) {
            None => LogFormat::Pretty,
            Some(text) => match text.trim() {
                "pretty" => LogFormat::Pretty,
                "json" => LogFormat::Json,
                other => {
                    return Err(invalid(
                        "GATEWAY_LOG_FORMAT",
                        format!("{other:?} is not pretty or json"),
                    ))
                }
            },
        };

        let mut sources = match fixed_sources {
            Some(sources) => sources,
            None => load_sources(env, file.sources)?,
        };
        // THOUGHTINDUSTRIES_MAX_RPS / TAPINTOSAFETY_MAX_RPS: the source named after the
        // provider, whether it came from the file, the environment or the sandbox.
        for provider in ProviderKind::ALL {
            let var = format!("{}_MAX_RPS", provider.as_str().to_ascii_uppercase());
            if let Some(text) = env_or(&var) {
                let max_rps = parse_max_rps(&var, &text)?;
                if let Some(source) = sources
                    .iter_mut()
                    .find(|source| source.name.as_str() == provider.as_str())
                {
                    source.max_rps = Some(max_rps);
                }
            }
        }
        if sources.is_empty() {
            return Err(ConfigError::NoSources);
        }

        Ok(Config {
            listen_addr,
            sources,
            cache_ttl,
            cache_max_bytes,
            upstream_timeout,
            upstream_concurrency,
            upstream_max_body_bytes,
            api_keys,
            cors_origins,
            log_format,
            stale_if_error,
            stale_while_revalidate,
            ti_role_pushdown,
            max_upstream_pages,
            upstream_retries,
            upstream_backoff,
            upstream_backoff_max,
            request_deadline,
            breaker_failures,
            breaker_cool_down,
            max_concurrent_requests,
            max_concurrent_exports,
            shutdown_drain,
            header_read_timeout,
            redis,
        })
    }
}

fn read_file(path: &str) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::File {
        path: path.to_owned(),
        reason: error.to_string(),
    })?;
    toml::from_str(&text).map_err(|error| ConfigError::FileSyntax {
        path: path.to_owned(),
        // toml's message names the unknown key and its line; it never echoes values of
        // well-formed keys, so secrets stay out of it.
        reason: error.message().to_owned(),
    })
}

fn parse_cors(origins: Vec<String>) -> Result<CorsOrigins, ConfigError> {
    if origins.is_empty() {
        return Ok(CorsOrigins::None);
    }
    if origins.iter().any(|origin| origin == "*") {
        return Ok(CorsOrigins::Any);
    }
    for origin in &origins {
        let parsed =
            Url::parse(origin).map_err(|_| invalid("GATEWAY_CORS_ORIGINS", format!("{origin:?} is not an origin")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(invalid(
                "GATEWAY_CORS_ORIGINS",
                format!("{origin:?} is not an http(s) origin"),
            ));
        }
    }
    Ok(CorsOrigins::List(origins))
}

fn parse_base_url(name: &str, text: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(text.trim()).map_err(|error| invalid(name, format!("not a URL ({error})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(name, "must be an http or https URL"));
    }
    if url.host_str().is_none() {
        return Err(invalid(name, "has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
        return Err(invalid(name, "must not carry credentials or a query"));
    }
    Ok(url)
}

fn load_sources(env: EnvLookup<'_>, file_sources: Vec<FileSource>) -> Result<Vec<SourceConfig>, ConfigError> {
    let mut sources = Vec::new();
    for (idx, file_source) in file_sources.into_iter().enumerate() {
        let field = |key: &str| format!("sources[{idx}].{key}");
        let provider = ProviderKind::parse(&file_source.provider).ok_or_else(|| {
            invalid(
                &field("provider"),
                format!("{:?} is not thoughtindustries or tapintosafety", file_source.provider),
            )
        })?;
        let name_text = file_source.name.unwrap_or_else(|| provider.as_str().to_owned());
        let name = SourceName::parse(&name_text).map_err(|reason| invalid(&field("name"), reason))?;
        if sources.iter().any(|source: &SourceConfig| source.name == name) {
            return Err(invalid(&field("name"), format!("source name {name} is used twice")));
        }
        let base_url = parse_base_url(&field("base_url"), &file_source.base_url)?;
        let max_rps = file_source
            .max_rps
            .map(|value| check_max_rps(&field("max_rps"), value))
            .transpose()?;
        sources.push(SourceConfig {
            name,
            provider,
            base_url,
            api_key: file_source.api_key,
            max_rps,
        });
    }

    for provider in ProviderKind::ALL {
        let prefix = provider.as_str().to_ascii_uppercase();
        let url_var = format!("{prefix}_BASE_URL");
        let key_var = format!("{prefix}_API_KEY");
        let env_url = env(&url_var).filter(|value| !value.trim().is_empty());
        let env_key = env(&key_var).filter(|value| !value.trim().is_empty());
        let name = SourceName::parse(provider.as_str()).expect("provider names are valid source names");
        match sources.iter_mut().find(|source| source.name == name) {
            Some(existing) => {
                if existing.provider != provider && (env_url.is_some() || env_key.is_some()) {
                    return Err(invalid(
                        &url_var,
                        format!("source {name} in the config file is not of provider {provider}"),
                    ));
                }
                if let Some(url) = env_url {
                    existing.base_url = parse_base_url(&url_var, &url)?;
                }
                if let Some(key) = env_key {
                    existing.api_key = SecretString::from(key.trim().to_owned());
                }
            }
            None => match (env_url, env_key) {
                (None, None) => {}
                (Some(url), Some(key)) => sources.push(SourceConfig {
                    name,
                    provider,
                    base_url: parse_base_url(&url_var, &url)?,
                    api_key: SecretString::from(key.trim().to_owned()),
                    max_rps: None,
                }),
                (Some(_), None) => return Err(invalid(&key_var, format!("required when {url_var} is set"))),
                (None, Some(_)) => return Err(invalid(&url_var, format!("required when {key_var} is set"))),
            },
        }
    }
    Ok(sources)
}

/// The config as an operator would read it, secrets as `***`.
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "listen_addr = \"{}\"", self.listen_addr)?;
        writeln!(f, "cache_ttl_secs = {}", self.cache_ttl.as_secs())?;
        writeln!(f, "cache_max_bytes = {}", self.cache_max_bytes)?;
        writeln!(f, "upstream_timeout_ms = {}", self.upstream_timeout.as_millis())?;
        writeln!(f, "upstream_concurrency = {}", self.upstream_concurrency)?;
        writeln!(f, "upstream_max_body_bytes = {}", self.upstream_max_body_bytes)?;
        writeln!(f, "max_upstream_pages = {}", self.max_upstream_pages)?;
        writeln!(f, "ti_role_pushdown = {}", self.ti_role_pushdown)?;
        writeln!(f, "upstream_retries = {}", self.upstream_retries)?;
        writeln!(f, "upstream_backoff_ms = {}", self.upstream_backoff.as_millis())?;
        writeln!(f, "upstream_backoff_max_ms = {}", self.upstream_backoff_max.as_millis())?;
        writeln!(f, "request_deadline_ms = {}", self.request_deadline.as_millis())?;
        writeln!(f, "breaker_failures = {}", self.breaker_failures)?;
        writeln!(f, "breaker_cool_down_secs = {}", self.breaker_cool_down.as_secs())?;
        writeln!(f, "stale_if_error_secs = {}", self.stale_if_error.as_secs())?;
        writeln!(
            f,
            "stale_while_revalidate_secs = {}",
            self.stale_while_revalidate.as_secs()
        )?;
        writeln!(f, "max_concurrent_requests = {}", self.max_concurrent_requests)?;
        writeln!(f, "max_concurrent_exports = {}", self.max_concurrent_exports)?;
        writeln!(f, "shutdown_drain_secs = {}", self.shutdown_drain.as_secs())?;
        writeln!(f, "header_read_timeout_ms = {}", self.header_read_timeout.as_millis())?;
        if let Some(redis) = &self.redis {
            writeln!(f, "redis_url = \"***\"")?;
            writeln!(f, "redis_prefix = {:?}", redis.prefix)?;
            writeln!(f, "redis_timeout_ms = {}", redis.timeout.as_millis())?;
        }
        writeln!(
            f,
            "api_keys = {}",
            if self.api_keys.is_empty() { "[]" } else { "\"***\"" }
        )?;
        let cors = match &self.cors_origins {
            CorsOrigins::None => "[]".to_owned(),
            CorsOrigins::Any => "\"*\"".to_owned(),
            CorsOrigins::List(origins) => format!("{origins:?}"),
        };
        writeln!(f, "cors_origins = {cors}")?;
        let log_format = match self.log_format {
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        };
        writeln!(f, "log_format = \"{log_format}\"")?;
        for source in &self.sources {
            writeln!(f, "\n[[sources]]")?;
            writeln!(f, "name = \"{}\"", source.name)?;
            writeln!(f, "provider = \"{}\"", source.provider)?;
            writeln!(f, "base_url = \"{}\"", source.base_url)?;
            writeln!(f, "api_key = \"***\"")?;
            if let Some(max_rps) = source.max_rps {
                writeln!(f, "max_rps = {max_rps}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write;

    use secrecy::ExposeSecret;

    use super::*;

    fn load_with(vars: &[(&str, &str)], file: Option<&str>) -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let lookup = move |name: &str| env.get(name).cloned();
        let path = file.map(|text| {
            let mut tmp = std::env::temp_dir();
            tmp.push(format!("users-gateway-config-{}.toml", uuid::Uuid::new_v4()));
            std::fs::File::create(&tmp).unwrap().write_all(text.as_bytes()).unwrap();
            tmp
        });
        let result = Config::load(&lookup, path.as_ref().map(|p| p.to_str().unwrap()), None);
        if let Some(path) = path {
            let _ = std::fs::remove_file(path);
        }
        result
    }

    #[test]
    fn nothing_configured_names_the_variables() {
        let message = load_with(&[], None).unwrap_err().to_string();
        for name in [
            "THOUGHTINDUSTRIES_BASE_URL",
            "TAPINTOSAFETY_API_KEY",
            "--config",
            "--demo",
        ] {
            assert!(message.contains(name), "{message}");
        }
    }

    #[test]
    fn env_sources_come_in_provider_order_with_defaults() {
        let config = load_with(
            &[
                ("TAPINTOSAFETY_BASE_URL", "https://tis.example"),
                ("TAPINTOSAFETY_API_KEY", "k2"),
                ("THOUGHTINDUSTRIES_BASE_URL", "https://ti.example"),
                ("THOUGHTINDUSTRIES_API_KEY", "k1"),
            ],
            None,
        )
        .unwrap();
        let names: Vec<_> = config.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["thoughtindustries", "tapintosafety"]);
        assert_eq!(config.listen_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.cache_ttl, Duration::from_secs(60));
        assert_eq!(config.upstream_timeout, Duration::from_millis(5000));
        assert_eq!(config.cache_max_bytes, 67_108_864);
    }

    #[test]
    fn base_url_without_key_is_an_error_naming_the_key() {
        let error = load_with(&[("THOUGHTINDUSTRIES_BASE_URL", "https://ti.example")], None).unwrap_err();
        assert!(error.to_string().contains("THOUGHTINDUSTRIES_API_KEY"), "{error}");
    }

    #[test]
    fn base_url_must_be_http() {
        let error = load_with(
            &[
                ("TAPINTOSAFETY_BASE_URL", "ftp://tis.example"),
                ("TAPINTOSAFETY_API_KEY", "k"),
            ],
            None,
        )
        .unwrap_err();
        assert!(error.to_string().contains("TAPINTOSAFETY_BASE_URL"), "{error}");
    }

    #[test]
    fn file_sources_keep_their_order_and_env_overrides_by_name() {
        let file = r#"
            listen_addr = "127.0.0.1:9999"
            cache_ttl_secs = 5
            [[sources]]
            name = "tenant-b"
            provider = "thoughtindustries"
            base_url = "https://b.example"
            api_key = "file-key-b"
            [[sources]]
            provider = "thoughtindustries"
            base_url = "https://a.example"
            api_key = "file-key-a"
        "#;
        let config = load_with(
            &[
                ("THOUGHTINDUSTRIES_API_KEY", "env-key"),
                ("GATEWAY_CACHE_TTL_SECS", "7"),
            ],
            Some(file),
        )
        .unwrap();
        let names: Vec<_> = config.sources.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["tenant-b", "thoughtindustries"]);
        assert_eq!(config.sources[1].api_key.expose_secret(), "env-key");
        assert_eq!(config.sources[0].api_key.expose_secret(), "file-key-b");
        assert_eq!(config.listen_addr.port(), 9999);
        assert_eq!(config.cache_ttl, Duration::from_secs(7), "env wins over the file");
    }

    #[test]
    fn unknown_file_key_is_named() {
        let error = load_with(&[], Some("cache_tll_secs = 5\n")).unwrap_err();
        assert!(error.to_string().contains("cache_tll_secs"), "{error}");
    }

    #[test]
    fn a_mistyped_key_is_not_echoed() {
        let file = "[[sources]]\nprovider = \"tapintosafety\"\nbase_url = \"https://a.example\"\napi_key = 987654321\n";
        let message = load_with(&[], Some(file)).unwrap_err().to_string();
        assert!(
            message.contains("api_key") && !message.contains("987654321"),
            "{message}"
        );
    }

    #[test]
    fn duplicate_source_names_are_rejected() {
        let file = r#"
            [[sources]]
            provider = "tapintosafety"
            base_url = "https://a.example"
            api_key = "x"
            [[sources]]
            provider = "tapintosafety"
            base_url = "https://b.example"
            api_key = "y"
        "#;
        assert!(load_with(&[], Some(file)).unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn secrets_never_print() {
        let config = load_with(
            &[
                ("THOUGHTINDUSTRIES_BASE_URL", "https://ti.example"),
                ("THOUGHTINDUSTRIES_API_KEY", "super-secret-ti"),
                ("GATEWAY_API_KEYS", "caller-secret-1,caller-secret-2"),
            ],
            None,
        )
        .unwrap();
        let shown = format!("{config}\n{config:?}");
        for secret in ["super-secret-ti", "caller-secret-1", "caller-secret-2"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("***"));
        assert_eq!(config.api_keys.len(), 2);
    }

    #[test]
    fn bad_numbers_name_the_variable() {
        for (name, value) in [
            ("GATEWAY_CACHE_TTL_SECS", "soon"),
            ("GATEWAY_UPSTREAM_TIMEOUT_MS", "0"),
            ("GATEWAY_LISTEN_ADDR", "localhost"),
            ("GATEWAY_LOG_FORMAT", "xml"),
        ] {
            let error = load_with(
                &[
                    (name, value),
                    ("TAPINTOSAFETY_BASE_URL", "https://tis.example"),
                    ("TAPINTOSAFETY_API_KEY", "k"),
                ],
                None,
            )
            .unwrap_err();
            assert!(error.to_string().contains(name), "{error}");
        }
    }
    const TIS: [(&str, &str); 2] = [
        ("TAPINTOSAFETY_BASE_URL", "https://tis.example"),
        ("TAPINTOSAFETY_API_KEY", "k"),
    ];

    fn load_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut all = TIS.to_vec();
        all.extend_from_slice(vars);
        load_with(&all, None)
    }

    #[test]
    fn blank_api_keys_refuse_to_start() {
        for blank in ["", " ", " , ", ",,", "\t,\n"] {
            let message = load_env(&[("GATEWAY_API_KEYS", blank)]).unwrap_err().to_string();
            assert!(
                message.contains("GATEWAY_API_KEYS") && message.contains("holds no key"),
                "{blank:?}: {message}"
            );
        }
        let tis_file = "[[sources]]\nprovider = \"tapintosafety\"\nbase_url = \"https://a.example\"\napi_key = \"k\"\n";
        for keys in [
            "api_keys = \"\"",
            "api_keys = \" , \"",
            "api_keys = []",
            "api_keys = [\" \", \"\"]",
        ] {
            let file = format!("{keys}\n{tis_file}");
            let message = load_with(&[], Some(&file)).unwrap_err().to_string();
            assert!(
                message.contains("api_keys") && message.contains("holds no key"),
                "{keys}: {message}"
            );
        }
    }

    #[test]
    fn api_keys_unset_means_no_auth_and_blanks_between_keys_are_dropped() {
        assert!(load_env(&[]).unwrap().api_keys.is_empty());
        let config = load_env(&[("GATEWAY_API_KEYS", " one , ,two ")]).unwrap();
        let keys: Vec<_> = config
            .api_keys
            .iter()
            .map(|key| key.expose_secret().to_owned())
            .collect();
        assert_eq!(keys, ["one", "two"]);
    }

    #[test]
    fn blank_api_keys_in_the_env_win_over_file_keys() {
        let file = "api_keys = [\"file-key\"]\n[[sources]]\nprovider = \"tapintosafety\"\nbase_url = \"https://a.example\"\napi_key = \"k\"\n";
        let message = load_with(&[("GATEWAY_API_KEYS", " ")], Some(file))
            .unwrap_err()
            .to_string();
        assert!(message.contains("GATEWAY_API_KEYS"), "{message}");
        assert!(!message.contains("file-key"), "{message}");
    }

    /// A numeric setting, its bounds, and the loaded value it shows up as.
    type Setting = (&'static str, Bounds, fn(&Config) -> u128);

    /// Every numeric setting.
    fn bounded_settings() -> Vec<Setting> {
        vec![
            ("GATEWAY_CACHE_TTL_SECS", WINDOW_SECS, |c| c.cache_ttl.as_secs().into()),
            ("GATEWAY_CACHE_MAX_BYTES", CACHE_BYTES, |c| c.cache_max_bytes.into()),
            ("GATEWAY_UPSTREAM_TIMEOUT_MS", TIMEOUT_MS, |c| {
                c.upstream_timeout.as_millis()
            }),
            ("GATEWAY_UPSTREAM_CONCURRENCY", CONCURRENCY, |c| {
                c.upstream_concurrency as u128
            }),
            ("GATEWAY_UPSTREAM_MAX_BODY_BYTES", BODY_BYTES, |c| {
                c.upstream_max_body_bytes as u128
            }),
            ("GATEWAY_STALE_IF_ERROR_SECS", WINDOW_SECS, |c| {
                c.stale_if_error.as_secs().into()
            }),
            ("GATEWAY_STALE_WHILE_REVALIDATE_SECS", WINDOW_SECS, |c| {
                c.stale_while_revalidate.as_secs().into()
            }),
            ("GATEWAY_MAX_UPSTREAM_PAGES", UPSTREAM_PAGES, |c| {
                c.max_upstream_pages.into()
            }),
            ("GATEWAY_UPSTREAM_RETRIES", RETRIES, |c| c.upstream_retries as u128),
            ("GATEWAY_UPSTREAM_BACKOFF_MS", BACKOFF_MS, |c| {
                c.upstream_backoff.as_millis()
            }),
            ("GATEWAY_UPSTREAM_BACKOFF_MAX_MS", BACKOFF_MS, |c| {
                c.upstream_backoff_max.as_millis()
            }),
            ("GATEWAY_REQUEST_DEADLINE_MS", TIMEOUT_MS, |c| {
                c.request_deadline.as_millis()
            }),
            ("GATEWAY_BREAKER_FAILURES", BREAKER_FAILURES, |c| {
                c.breaker_failures.into()
            }),
            ("GATEWAY_BREAKER_COOL_DOWN_SECS", HOUR_SECS, |c| {
                c.breaker_cool_down.as_secs().into()
            }),
            ("GATEWAY_MAX_CONCURRENT_REQUESTS", CONCURRENT_REQUESTS, |c| {
                c.max_concurrent_requests as u128
            }),
            ("GATEWAY_MAX_CONCURRENT_EXPORTS", CONCURRENT_REQUESTS, |c| {
                c.max_concurrent_exports as u128
            }),
            ("GATEWAY_SHUTDOWN_DRAIN_SECS", HOUR_SECS, |c| {
                c.shutdown_drain.as_secs().into()
            }),
            ("GATEWAY_HEADER_READ_TIMEOUT_MS", HEADER_READ_TIMEOUT_MS, |c| {
                c.header_read_timeout.as_millis()
            }),
        ]
    }

    #[test]
    fn every_number_is_bounded_and_the_error_names_the_range() {
        for (name, bounds, loaded) in bounded_settings() {
            for edge in [bounds.min, bounds.max] {
                let config = load_env(&[(name, &edge.to_string())]).unwrap_or_else(|e| panic!("{name}={edge}: {e}"));
                assert_eq!(loaded(&config), u128::from(edge), "{name}");
            }
            let mut outside = vec![bounds.max + 1, u64::MAX];
            if bounds.min > 0 {
                outside.push(bounds.min - 1);
            }
            for value in outside {
                let message = load_env(&[(name, &value.to_string())]).unwrap_err().to_string();
                let range = format!("from {} to {}", bounds.min, bounds.max);
                assert!(
                    message.contains(name) && message.contains(&range) && message.contains(&value.to_string()),
                    "{name}={value}: {message}"
                );
            }
        }
    }

    #[test]
    fn a_file_value_out_of_range_names_the_file_key() {
        let file = "request_deadline_ms = 18446744073709551615\n[[sources]]\nprovider = \"tapintosafety\"\nbase_url = \"https://a.example\"\napi_key = \"k\"\n";
        // TOML integers are i64: the largest u64 does not even parse, and says so.
        assert!(load_with(&[], Some(file)).is_err());
        let file = file.replace("18446744073709551615", "9223372036854775807");
        let message = load_with(&[], Some(&file)).unwrap_err().to_string();
        assert!(
            message.contains("request_deadline_ms") && message.contains("from 1 to 3600000"),
            "{message}"
        );
    }

    #[test]
    fn stale_while_revalidate_defaults_to_thirty_seconds_and_is_read_from_the_file() {
        assert_eq!(load_env(&[]).unwrap().stale_while_revalidate, Duration::from_secs(30));
        let file = "stale_while_revalidate_secs = 0\n[[sources]]\nprovider = \"tapintosafety\"\nbase_url = \"https://a.example\"\napi_key = \"k\"\n";
        let config = load_with(&[], Some(file)).unwrap();
        assert_eq!(config.stale_while_revalidate, Duration::ZERO, "0 turns it off");
        assert!(config.to_string().contains("stale_while_revalidate_secs = 0"));
        let config = load_with(&[("GATEWAY_STALE_WHILE_REVALIDATE_SECS", "12")], Some(file)).unwrap();
        assert_eq!(
            config.stale_while_revalidate,
            Duration::from_secs(12),
            "env wins over the file"
        );
        let file = file.replace("= 0", "= 86401");
        let message = load_with(&[], Some(&file)).unwrap_err().to_string();
        assert!(
            message.contains("stale_while_revalidate_secs") && message.contains("from 0 to 86400"),
            "{message}"
        );
    }

    #[test]
    fn the_header_read_timeout_defaults_to_thirty_seconds() {
        assert_eq!(load_env(&[]).unwrap().header_read_timeout, Duration::from_secs(30));
    }
}
