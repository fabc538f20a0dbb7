//! Where the S3 server is and who we are to it, from the standard AWS
//! variables and files, as the AWS command line reads them:
//! `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` (a server other than AWS:
//! MinIO, Garage, Ceph, a local test server), `AWS_REGION` or
//! `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY`
//! (+ `AWS_SESSION_TOKEN`), else the profile `AWS_PROFILE` (default
//! `default`) of `~/.aws/credentials` and `~/.aws/config`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::sign::Credentials;

/// How to reach the server.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `http` or `https`.
    pub scheme: String,
    /// Host and port of the endpoint (without the bucket).
    pub host: String,
    pub region: String,
    /// The bucket goes in the path (`host/bucket/key`) rather than the host
    /// name (`bucket.host/key`): for every endpoint other than AWS, whose
    /// DNS does not know bucket names.
    pub path_style: bool,
    pub credentials: Credentials,
    /// Attempts per request (the first included) on 5xx, throttling and
    /// network errors.
    pub attempts: u32,
    /// First wait between attempts; doubled each time, at most 10 s.
    pub backoff: Duration,
    /// Longest wait for a response to begin.
    pub timeout: Duration,
}

impl Settings {
    /// From the environment; an error sentence says what is missing.
    pub fn from_env() -> Result<Settings, String> {
        Settings::from_vars(&|name| std::env::var(name).ok())
    }

    /// From variables looked up with `lookup` (the environment, or a map
    /// in tests).
    pub fn from_vars(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let profile = var("AWS_PROFILE").unwrap_or_else(|| "default".to_owned());
        let home = var("HOME").map(PathBuf::from);
        let credentials_file = var("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws/credentials")));
        let config_file = var("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws/config")));
        let from_file = |file: &Option<PathBuf>, section: &str| {
            file.as_ref()
                .and_then(|f| std::fs::read_to_string(f).ok())
                .map(|text| ini_section(&text, section))
                .unwrap_or_default()
        };
        let creds_section = from_file(&credentials_file, &profile);
        let config_section = from_file(
            &config_file,
            &if profile == "default" {
                profile.clone()
            } else {
                format!("profile {profile}")
            },
        );
        let credentials = match (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key), Some(secret_key)) => Credentials {
                access_key,
                secret_key,
                session_token: var("AWS_SESSION_TOKEN"),
            },
            _ => match (
                creds_section.get("aws_access_key_id"),
                creds_section.get("aws_secret_access_key"),
            ) {
                (Some(a), Some(s)) => Credentials {
                    access_key: a.clone(),
                    secret_key: s.clone(),
                    session_token: creds_section.get("aws_session_token").cloned(),
                },
                _ => {
                    return Err(format!(
                        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put them in profile `{profile}` of {}",
                        credentials_file
                            .map_or("~/.aws/credentials".into(), |f| f.display().to_string())
                    ));
                }
            },
        };
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .or_else(|| config_section.get("region").cloned())
            .unwrap_or_else(|| "us-east-1".to_owned());
        let endpoint = var("AWS_ENDPOINT_URL_S3")
            .or_else(|| var("AWS_ENDPOINT_URL"))
            .or_else(|| config_section.get("endpoint_url").cloned());
        let (scheme, host, path_style) = match endpoint {
            Some(url) => {
                let (scheme, rest) = url.split_once("://").ok_or_else(|| {
                    format!("AWS_ENDPOINT_URL `{url}` is not a URL (like http://127.0.0.1:9000)")
                })?;
                if scheme != "http" && scheme != "https" {
                    return Err(format!(
                        "AWS_ENDPOINT_URL `{url}` must start with http:// or https://"
                    ));
                }
                let host = rest.trim_end_matches('/');
                if host.is_empty() || host.contains('/') {
                    return Err(format!(
                        "AWS_ENDPOINT_URL `{url}` must name only a host and port, without a path"
                    ));
                }
                (scheme.to_owned(), host.to_owned(), true)
            }
            None => (
                "https".to_owned(),
                format!("s3.{region}.amazonaws.com"),
                false,
            ),
        };
        let number = |name: &str, default: u64| {
            var(name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(default)
        };
        Ok(Settings {
            scheme,
            host,
            region,
            path_style,
            credentials,
            attempts: number("EPYGIBUS_S3_ATTEMPTS", 8).max(1) as u32,
            backoff: Duration::from_millis(number("EPYGIBUS_S3_BACKOFF_MS", 200)),
            timeout: Duration::from_secs(number("EPYGIBUS_S3_TIMEOUT", 60).max(1)),
        })
    }
}

/// The `key = value` lines of section `[name]` of an INI file.
fn ini_section(text: &str, name: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == name;
            continue;
        }
        if inside && let Some((k, v)) = line.split_once('=') {
            out.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections_are_kept_apart() {
        let text = "[default]\naws_access_key_id = A\n# c\n[profile x]\nregion=eu-west-1\n[x]\naws_access_key_id = B\n";
        assert_eq!(ini_section(text, "default")["aws_access_key_id"], "A");
        assert_eq!(ini_section(text, "x")["aws_access_key_id"], "B");
        assert_eq!(ini_section(text, "profile x")["region"], "eu-west-1");
        assert!(ini_section(text, "none").is_empty());
    }
}
