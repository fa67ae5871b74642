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
    /// Accepted for SPEC §2 compatibility; stale-if-error serving is not implemented yet.
    pub stale_if_error: Duration,
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
    /// After SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_drain: Duration,
}

/// One upstream instance of a provider.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub name: SourceName,
    pub provider: ProviderKind,
    pub base_url: Url,
    pub api_key: SecretString,
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
    ti_role_pushdown: Option<bool>,
    max_upstream_pages: Option<u64>,
    upstream_retries: Option<u64>,
    upstream_backoff_ms: Option<u64>,
    upstream_backoff_max_ms: Option<u64>,
    request_deadline_ms: Option<u64>,
    breaker_failures: Option<u64>,
    breaker_cool_down_secs: Option<u64>,
    max_concurrent_requests: Option<u64>,
    shutdown_drain_secs: Option<u64>,
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

/// Reads the real process environment; empty values count as unset.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
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
        let number = |name: &str, file_value: Option<u64>, default: u64, min: u64| -> Result<u64, ConfigError> {
            let value = match env_or(name) {
                Some(text) => text
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| invalid(name, format!("{text:?} is not a whole number")))?,
                None => file_value.unwrap_or(default),
            };
            if value < min {
                return Err(invalid(name, format!("must be at least {min}")));
            }
            Ok(value)
        };
        let cache_ttl = Duration::from_secs(number("GATEWAY_CACHE_TTL_SECS", file.cache_ttl_secs, 60, 0)?);
        let cache_max_bytes = number("GATEWAY_CACHE_MAX_BYTES", file.cache_max_bytes, 64 * 1024 * 1024, 0)?;
        let upstream_timeout = Duration::from_millis(number(
            "GATEWAY_UPSTREAM_TIMEOUT_MS",
            file.upstream_timeout_ms,
            5000,
            1,
        )?);
        let upstream_concurrency =
            number("GATEWAY_UPSTREAM_CONCURRENCY", file.upstream_concurrency, 8, 1)?.min(1024) as usize;
        let upstream_max_body_bytes = number(
            "GATEWAY_UPSTREAM_MAX_BODY_BYTES",
            file.upstream_max_body_bytes,
            16 * 1024 * 1024,
            1024,
        )?
        .min(1 << 30) as usize;
        let stale_if_error =
            Duration::from_secs(number("GATEWAY_STALE_IF_ERROR_SECS", file.stale_if_error_secs, 300, 0)?);

        let max_upstream_pages = number("GATEWAY_MAX_UPSTREAM_PAGES", file.max_upstream_pages, 1000, 1)?;
        let upstream_retries = number("GATEWAY_UPSTREAM_RETRIES", file.upstream_retries, 2, 0)?.min(10) as usize;
        let upstream_backoff =
            Duration::from_millis(number("GATEWAY_UPSTREAM_BACKOFF_MS", file.upstream_backoff_ms, 100, 1)?);
        let upstream_backoff_max = Duration::from_millis(number(
            "GATEWAY_UPSTREAM_BACKOFF_MAX_MS",
            file.upstream_backoff_max_ms,
            2000,
            1,
        )?);
        let request_deadline = Duration::from_millis(number(
            "GATEWAY_REQUEST_DEADLINE_MS",
            file.request_deadline_ms,
            15_000,
            1,
        )?);
        let breaker_failures = number("GATEWAY_BREAKER_FAILURES", file.breaker_failures, 5, 0)?.min(1_000_000) as u32;
        let breaker_cool_down = Duration::from_secs(number(
            "GATEWAY_BREAKER_COOL_DOWN_SECS",
            file.breaker_cool_down_secs,
            10,
            0,
        )?);
        let max_concurrent_requests =
            number("GATEWAY_MAX_CONCURRENT_REQUESTS", file.max_concurrent_requests, 512, 1)?.min(1 << 20) as usize;
        let shutdown_drain =
            Duration::from_secs(number("GATEWAY_SHUTDOWN_DRAIN_SECS", file.shutdown_drain_secs, 30, 0)?);
        let ti_role_pushdown = match env_or("GATEWAY_TI_ROLE_PUSHDOWN") {
            Some(text) => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => return Err(invalid("GATEWAY_TI_ROLE_PUSHDOWN", "must be true or false")),
            },
            None => file.ti_role_pushdown.unwrap_or(true),
        };

        let api_keys: Vec<SecretString> = match env_or("GATEWAY_API_KEYS") {
            Some(text) => split_list(&text),
            None => file.api_keys.map(StringList::into_items).unwrap_or_default(),
        }
        .into_iter()
        .filter(|key| !key.is_empty())
        .map(SecretString::from)
        .collect();

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

        let sources = match fixed_sources {
            Some(sources) => sources,
            None => load_sources(env, file.sources)?,
        };
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
            ti_role_pushdown,
            max_upstream_pages,
            upstream_retries,
            upstream_backoff,
            upstream_backoff_max,
            request_deadline,
            breaker_failures,
            breaker_cool_down,
            max_concurrent_requests,
            shutdown_drain,
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
        sources.push(SourceConfig {
            name,
            provider,
            base_url,
            api_key: file_source.api_key,
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
        writeln!(f, "max_concurrent_requests = {}", self.max_concurrent_requests)?;
        writeln!(f, "shutdown_drain_secs = {}", self.shutdown_drain.as_secs())?;
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
}
