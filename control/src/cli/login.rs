//! `npm-connector login`: like `aws codeartifact login --tool npm`. Gets the ID token the pod or
//! CI job already has, exchanges it at `serve`'s `/v1/token` for a short-lived connector
//! token with its client files, and writes them (user-level, or into `--dir`). A file it did
//! not write (or that was changed since) is never overwritten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use npm_connector::exchange::{oidc, TokenRequest, TokenResponse, Tool};
use npm_connector::render::YARN_CLASSIC_FILE;
use sha2::{Digest, Sha256};

#[derive(clap::Args)]
pub struct LoginArgs {
    /// The token exchange, e.g. https://npm-connector.build.svc:8443
    #[arg(long)]
    server: url::Url,
    /// The connector, namespace/name.
    #[arg(long)]
    connector: String,
    /// Whose client files to write.
    #[arg(long, value_enum, default_value = "npm")]
    tool: Tool,
    /// Read the ID token from this file (a projected ServiceAccount token).
    #[arg(long, group = "source")]
    id_token_file: Option<PathBuf>,
    /// Request the ID token from GitHub Actions (the job needs `permissions: id-token: write`).
    #[arg(long, group = "source")]
    github_actions: bool,
    /// Take the ID token from GitLab CI's `id_tokens` variable named by --gitlab-variable.
    #[arg(long, group = "source")]
    gitlab: bool,
    #[arg(long, default_value = "NPM_CONNECTOR_ID_TOKEN")]
    gitlab_variable: String,
    /// The audience to request from GitHub Actions.
    #[arg(long, default_value = oidc::DEFAULT_AUDIENCE)]
    audience: String,
    /// The client mode the server must render: gateway, https-proxy or sidecar (refused if it
    /// renders another).
    #[arg(long)]
    mode: Option<String>,
    /// Write every file into this directory instead of the user-level locations.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// CA certificates (PEM) to verify the server (and the CI's ID-token endpoint) with, besides
    /// the public roots: the CA that issued the exchange's certificate.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

/// Which files this command wrote, with the SHA-256 of what it wrote: a file is overwritten
/// only while it still holds exactly that.
const OWNED: &str = ".npm-connector-login.json";

fn id_token(a: &LoginArgs, rt: &tokio::runtime::Runtime) -> Result<String> {
    if let Some(f) = &a.id_token_file {
        let t = std::fs::read_to_string(f).with_context(|| format!("--id-token-file {}", f.display()))?;
        return Ok(t.trim().to_owned());
    }
    if a.gitlab {
        return std::env::var(&a.gitlab_variable).map(|t| t.trim().to_owned()).with_context(|| {
            format!(
                "--gitlab: ${} is not set; declare it in the job: id_tokens: {{ {}: {{ aud: {} }} }}",
                a.gitlab_variable, a.gitlab_variable, a.audience
            )
        });
    }
    if a.github_actions {
        let (Ok(url), Ok(bearer)) =
            (std::env::var("ACTIONS_ID_TOKEN_REQUEST_URL"), std::env::var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"))
        else {
            bail!("--github-actions: ACTIONS_ID_TOKEN_REQUEST_URL/TOKEN are not set; give the job `permissions: id-token: write`");
        };
        let mut url = url::Url::parse(&url).context("ACTIONS_ID_TOKEN_REQUEST_URL")?;
        url.query_pairs_mut().append_pair("audience", &a.audience);
        let client = oidc::http_client(a.ca_file.as_deref()).map_err(anyhow::Error::msg)?;
        let v: serde_json::Value = rt.block_on(async {
            let r = client.get(url).bearer_auth(bearer).send().await.context("GitHub Actions ID-token request")?;
            if !r.status().is_success() {
                bail!("GitHub Actions ID-token request: HTTP {}", r.status());
            }
            r.json().await.context("GitHub Actions ID-token response")
        })?;
        return v
            .get("value")
            .and_then(|t| t.as_str())
            .map(str::to_owned)
            .context("GitHub Actions ID-token response has no value");
    }
    bail!("say where the ID token comes from: --id-token-file F, --github-actions or --gitlab")
}

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from).context("HOME is not set; use --dir")
}

/// Where a returned file (by name) goes.
type Destination = Box<dyn Fn(&str) -> PathBuf>;

/// Where each returned file goes, and the directory the `cafile` paths must name.
fn destinations(a: &LoginArgs) -> Result<(PathBuf, Destination)> {
    if let Some(d) = &a.dir {
        let d = std::path::absolute(d)?;
        let base = d.clone();
        return Ok((d, Box::new(move |f| base.join(f))));
    }
    let home = home()?;
    let side = home.join(".config/npm-connector").join(&a.connector);
    let (h, s, tool) = (home.clone(), side.clone(), a.tool);
    Ok((
        side,
        Box::new(move |f: &str| match f {
            ".npmrc" | ".yarnrc.yml" => h.join(f),
            "bunfig.toml" => h.join(".bunfig.toml"),
            YARN_CLASSIC_FILE if tool == Tool::YarnClassic => h.join(".npmrc"),
            _ => s.join(f),
        }),
    ))
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `files` (path → contents), refusing before writing anything if one exists that this
/// command did not write as it is now.
fn write_owned(record: &Path, files: &[(PathBuf, String)]) -> Result<()> {
    let mut owned: BTreeMap<String, String> =
        std::fs::read_to_string(record).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    for (path, _) in files {
        if let Ok(now) = std::fs::read(path) {
            if owned.get(&path.display().to_string()) != Some(&sha(&now)) {
                bail!(
                    "{} exists and was not written by npm-connector login (or was changed since); move it aside or use --dir",
                    path.display()
                );
            }
        }
    }
    for (path, contents) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension("npm-connector-tmp");
        {
            use std::io::Write as _;
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
            f.write_all(contents.as_bytes())?;
        }
        std::fs::rename(&tmp, path)?;
        owned.insert(path.display().to_string(), sha(contents.as_bytes()));
    }
    if let Some(parent) = record.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(record, serde_json::to_string_pretty(&owned)?)?;
    Ok(())
}

pub fn run(a: LoginArgs) -> Result<()> {
    if a.server.scheme() != "https" {
        bail!("--server must be https://: the exchange carries ID tokens and connector tokens");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let jwt = id_token(&a, &rt)?;
    let (dir, dest) = destinations(&a)?;
    let req = TokenRequest {
        connector: a.connector.clone(),
        tool: Some(a.tool),
        dir: Some(dir.clone()),
        mode: a.mode.clone(),
    };
    let client = oidc::http_client(a.ca_file.as_deref()).map_err(anyhow::Error::msg)?;
    let url = a.server.join("v1/token")?;
    let resp: TokenResponse = rt.block_on(async {
        let r = client.post(url.clone()).bearer_auth(&jwt).json(&req).send().await.with_context(|| format!("{url}"))?;
        let status = r.status();
        if !status.is_success() {
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            let msg = body.get("error").and_then(|e| e.as_str()).unwrap_or("no reason given").to_owned();
            bail!("{url}: HTTP {status}: {msg}");
        }
        r.json().await.with_context(|| format!("{url}: response"))
    })?;
    let files: Vec<(PathBuf, String)> = resp.files.iter().map(|(name, c)| (dest(name), c.clone())).collect();
    let record = match &a.dir {
        Some(_) => dir.join(OWNED),
        None => home()?.join(".config/npm-connector").join(OWNED),
    };
    write_owned(&record, &files)?;
    for (p, _) in &files {
        println!("wrote {}", p.display());
    }
    let left = resp.expires_at.saturating_sub(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    );
    let at = humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(resp.expires_at));
    println!(
        "token for {} ({} mode) expires at {at} (in {})",
        resp.connector,
        resp.mode,
        humantime::format_duration(std::time::Duration::from_secs(left))
    );
    Ok(())
}
