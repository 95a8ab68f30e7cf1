//! `npm-connector render`: manifests in, client files and a (validated) Envoy bootstrap out.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use npm_connector::render;
use npm_connector::token::OsEntropy;
use npm_connector::{manifest, output};

use super::{absolute, parse_ttl, DeployArgs};

mod staged;

#[derive(clap::Args)]
pub struct RenderArgs {
    /// Multi-document YAML files with Connector and Secret manifests.
    #[arg(short = 'f', long = "file", required_unless_present = "xds")]
    files: Vec<PathBuf>,
    /// Output directory (created; existing files are replaced).
    #[arg(short = 'o', long = "output")]
    out: PathBuf,
    #[command(flatten)]
    deploy: DeployArgs,
    /// Unix socket for Envoy's admin API [default: <output>/admin.sock].
    #[arg(long)]
    admin_socket: Option<PathBuf>,
    /// Lifetime of the minted client tokens, e.g. 30m, 12h, 3600 [default: no expiry].
    #[arg(long, value_parser = parse_ttl)]
    token_ttl: Option<u64>,
    /// Envoy binary used to validate the rendered bootstrap [default: $ENVOY_BIN, ./.venv/bin/envoy, envoy on PATH].
    #[arg(long)]
    envoy: Option<PathBuf>,
    /// Skip `envoy --mode validate`.
    #[arg(long)]
    no_validate: bool,
    /// Write a bootstrap that takes everything from `npm-connector serve` at this address
    /// (grpc://HOST:PORT) instead of a static one; the client files then come from `serve --clients`
    /// or `login`. Repeat for several replicas (a name resolving to several addresses counts too).
    #[arg(long, conflicts_with = "xds_dir")]
    xds: Vec<url::Url>,
    /// Mutual TLS to serve's xDS port: Envoy's client certificate (PEM)...
    #[arg(long, requires_all = ["xds_client_key", "xds_ca"])]
    xds_client_cert: Option<PathBuf>,
    /// ...its private key...
    #[arg(long, requires = "xds_client_cert")]
    xds_client_key: Option<PathBuf>,
    /// ...and the CA that issued serve's certificate (`serve --xds-tls-cert`).
    #[arg(long, requires = "xds_client_cert")]
    xds_ca: Option<PathBuf>,
    /// Write file-based xDS into this directory (watched by Envoy, files replaced atomically)
    /// and a bootstrap that reads it: updates need no control-plane process.
    #[arg(long)]
    xds_dir: Option<PathBuf>,
    /// The node id in the bootstrap (`--xds`): each Envoy on a control plane needs its own.
    #[arg(long, default_value = "npm-connector")]
    node_id: String,
    #[command(flatten)]
    istio: IstioArgs,
}

/// sidecar mode in an Istio mesh (`--istio`): the egress gateway terminates the build pods'
/// TLS to the registries with the connector CA's leaves and runs the filter as a WasmPlugin.
#[derive(clap::Args)]
struct IstioArgs {
    /// Also write istio/istio.yaml (ServiceEntry, VirtualServices, Gateway, DestinationRules,
    /// WasmPlugin) and istio/leaf-secrets.yaml (needs --mode sidecar).
    #[arg(long)]
    istio: bool,
    /// The egress gateway's namespace.
    #[arg(long, default_value = "istio-system")]
    istio_namespace: String,
    /// The egress gateway pods' labels, KEY=VALUE (repeatable).
    #[arg(long = "istio-gateway-label", value_parser = parse_label, default_value = "istio=egressgateway")]
    istio_gateway_labels: Vec<(String, String)>,
    /// The egress gateway's Service host.
    #[arg(long, default_value = "istio-egressgateway.istio-system.svc.cluster.local")]
    istio_gateway_service: String,
    /// The WasmPlugin's selector, KEY=VALUE (repeatable) [default: the gateway's labels].
    #[arg(long = "istio-selector", value_parser = parse_label, conflicts_with = "istio_target_ref")]
    istio_selector: Vec<(String, String)>,
    /// The WasmPlugin's targetRef instead, KIND/NAME (a Gateway API Gateway, or a Service).
    #[arg(long)]
    istio_target_ref: Option<String>,
    /// Only pods with these labels, KEY=VALUE (repeatable), are routed through the gateway.
    #[arg(long = "istio-build-pods", value_parser = parse_label)]
    istio_build_pods: Vec<(String, String)>,
    /// Where Istio pulls the filter: oci://REGISTRY/REPO:TAG (from `npm-connector image`),
    /// https://… or file://… [default: file://<--wasm>].
    #[arg(long)]
    istio_wasm_url: Option<String>,
    /// The sha256 Istio verifies (an OCI image's manifest digest) [default with a file:// URL:
    /// the module's].
    #[arg(long)]
    istio_wasm_sha256: Option<String>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or("expected KEY=VALUE")?;
    Ok((k.to_owned(), v.to_owned()))
}

impl IstioArgs {
    fn istio(&self, wasm: &Path) -> Result<Option<render::Istio>> {
        if !self.istio {
            return Ok(None);
        }
        let url = self.istio_wasm_url.clone().unwrap_or_else(|| format!("file://{}", wasm.display()));
        let sha256 = match (&self.istio_wasm_sha256, url.strip_prefix("file://")) {
            (Some(s), _) => Some(s.trim_start_matches("sha256:").to_owned()),
            (None, Some(path)) => std::fs::read(path).ok().map(|b| {
                use sha2::Digest as _;
                hex::encode(sha2::Sha256::digest(b))
            }),
            (None, None) => None,
        };
        let gateway_labels: std::collections::BTreeMap<String, String> =
            self.istio_gateway_labels.iter().cloned().collect();
        let target = match &self.istio_target_ref {
            Some(r) => {
                let Some((kind, name)) = r.split_once('/') else {
                    bail!("--istio-target-ref {r:?}: write KIND/NAME, e.g. Gateway/npm-egress");
                };
                render::IstioTarget::TargetRef(kind.to_owned(), name.to_owned())
            }
            None if self.istio_selector.is_empty() => render::IstioTarget::Selector(gateway_labels.clone()),
            None => render::IstioTarget::Selector(self.istio_selector.iter().cloned().collect()),
        };
        Ok(Some(render::Istio {
            namespace: self.istio_namespace.clone(),
            gateway_labels,
            gateway_service: self.istio_gateway_service.clone(),
            target,
            build_pods: self.istio_build_pods.iter().cloned().collect(),
            url,
            sha256,
        }))
    }
}

fn find_envoy(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_owned());
    }
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from(".venv/bin/envoy");
    if local.exists() {
        return Some(local);
    }
    std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join("envoy")).find(|p| p.is_file()))
}

pub fn run(a: RenderArgs) -> Result<()> {
    let mut sources = Vec::new();
    for f in &a.files {
        let text = std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        sources.push((f.display().to_string(), text));
    }
    let volumes = match &a.deploy.secrets_dir {
        Some(d) => npm_connector::serve::source::read_secret_volumes(d)?,
        None => Vec::new(),
    };
    let loaded = manifest::load_report_with(&sources, &a.deploy.namespace, &volumes)?;
    // Only a control plane's snapshot may be empty (it revokes); a static render of nothing is a mistake.
    if loaded.connectors.is_empty() && a.xds.is_empty() {
        bail!("{}", loaded.why_empty(&sources));
    }
    let connectors = loaded.connectors;
    for w in manifest::warnings(&connectors) {
        eprintln!("warning: {w}");
    }
    let out = absolute(&a.out)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let admin = a.admin_socket.as_deref().map(absolute).transpose()?.unwrap_or_else(|| out.join("admin.sock"));
    let mut opts = a.deploy.options(admin, a.token_ttl.map(|t| now + t), a.xds.is_empty())?;
    if a.xds.is_empty() {
        opts.tls = a.deploy.tls(&connectors, &out)?;
    }
    opts.istio = a.istio.istio(&opts.wasm)?;
    if opts.istio.is_some() && (!a.xds.is_empty() || a.xds_dir.is_some()) {
        bail!("--istio renders a static set of connectors: use it without --xds / --xds-dir");
    }
    let files = match (a.xds.is_empty(), &a.xds_dir) {
        (false, _) => {
            let targets = a.xds.iter().map(render::XdsTarget::parse).collect::<Result<Vec<_>, _>>()?;
            let tls = match (&a.xds_client_cert, &a.xds_client_key, &a.xds_ca) {
                (Some(cert), Some(key), Some(ca)) => {
                    Some(render::XdsClientTls { cert: absolute(cert)?, key: absolute(key)?, ca: absolute(ca)? })
                }
                _ => None,
            };
            render::xds_bootstrap(&opts, &a.node_id, &render::Xds { targets, tls })?
        }
        (true, Some(dir)) => render::xds_dir(&connectors, &opts, &absolute(dir)?, &mut OsEntropy)?,
        (true, None) => render::render(&connectors, &opts, &mut OsEntropy)?,
    };
    let xds_dir = a.xds_dir.as_deref().map(absolute).transpose()?;
    // Validate first, on a staged copy: a bootstrap Envoy rejects writes nothing (no fresh
    // tokens that match no running configuration, no half-updated directory).
    if a.no_validate {
        println!("not validated (--no-validate)");
    } else {
        match find_envoy(a.envoy.as_deref()) {
            None => println!("not validated: no Envoy binary found (set --envoy or ENVOY_BIN)"),
            Some(envoy) => {
                staged::validate(&envoy, &files, &out, xds_dir.as_deref(), &opts.sealing, &connectors)?;
                println!("validated with {} --mode validate: OK", envoy.display());
            }
        }
    }
    // render owns its output directory: what an earlier render wrote and this one does not
    // (a removed connector's files, an old leaf) is removed.
    for gone in output::write_owned(&out, &files)? {
        println!("removed {} (no longer rendered)", gone.display());
    }
    if let Some(dir) = &xds_dir {
        for old in remove_yaml_xds_files(dir) {
            println!(
                "removed {}: the xDS files are .json now; restart Envoy with {}",
                old.display(),
                out.join(render::bootstrap_path(&files)).display()
            );
        }
    }
    for c in &connectors {
        println!("rendered connector {} -> {}", c.id(), out.join(&c.namespace).join(&c.name).display());
    }
    println!("rendered Envoy bootstrap -> {}", out.join(render::bootstrap_path(&files)).display());
    if !opts.wasm.exists() {
        println!("note: {} does not exist yet; build the filter (make wasm) or pass --wasm", opts.wasm.display());
    }
    Ok(())
}

/// Earlier releases of `render --xds-dir` wrote `lds.yaml`, `cds.yaml`, `sds.yaml` and
/// `ecds-*.yaml`. An Envoy still on that bootstrap watches files nothing updates any more:
/// removing them makes its next reload fail loudly (it keeps its last good configuration and
/// logs the missing file) instead of serving stale connectors quietly.
fn remove_yaml_xds_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            matches!(name, "lds.yaml" | "cds.yaml" | "sds.yaml")
                || (name.starts_with("ecds-") && name.ends_with(".yaml"))
        })
        .filter(|p| std::fs::remove_file(p).is_ok())
        .collect()
}
