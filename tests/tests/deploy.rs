//! `deploy/`, the kustomize base a platform team applies: it builds offline with kubectl, every
//! object validates against the Kubernetes schemas (kubernetes-validate, pinned), the gateway's
//! bootstrap is the renderer's output (golden) and loads in the real Envoy, and every flag the
//! manifests pass to `serve` exists.

use std::path::{Path, PathBuf};
use std::process::Command;

use npm_connector_tests::control;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The arguments `deploy/gateway/envoy.yaml` is rendered with.
const GATEWAY_RENDER: &[&str] = &[
    "--xds",
    "grpc://npm-connector-xds.npm-connector.svc.cluster.local:18000",
    "--node-id",
    "npm-gateway",
    "--mode",
    "gateway",
    "--listen",
    "0.0.0.0:8080",
    "--public-url",
    "http://npm-gateway.npm-connector.svc:8080/",
    "--admin-socket",
    "/run/envoy/admin.sock",
    "--xds-client-cert",
    "/etc/envoy/xds-tls/tls.crt",
    "--xds-client-key",
    "/etc/envoy/xds-tls/tls.key",
    "--xds-ca",
    "/etc/envoy/xds-tls/ca.crt",
    "--no-validate",
];

#[test]
fn the_kustomize_base_builds_validates_and_matches_the_renderer() {
    let deploy = root().join("deploy");
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (ok, built) = output(Command::new("kubectl").arg("kustomize").arg(&deploy));
    assert!(ok, "kubectl kustomize deploy/:\n{built}");
    let kinds: Vec<&str> = built.lines().filter_map(|l| l.strip_prefix("kind: ")).collect();
    for want in ["Namespace", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap"] {
        assert!(kinds.contains(&want), "{want} missing from {kinds:?}");
    }
    assert!(!kinds.iter().any(|k| k.contains("Role")), "serve reads no Kubernetes API: no RBAC");
    let built_file = tmp.path().join("built.yaml");
    std::fs::write(&built_file, &built).unwrap_or_else(|e| panic!("{e}"));

    // Every object against the Kubernetes schemas, strictly (unknown fields fail).
    let validate = root().join(".venv/bin/kubernetes-validate");
    let (ok, report) = output(
        Command::new(&validate)
            .args(["--strict", "--kubernetes-version", "1.32.0"])
            .arg(&built_file)
            .arg(deploy.join("examples/build-job.yaml")),
    );
    assert!(ok && !report.contains("ERROR"), "kubernetes-validate:\n{report}");
    assert_eq!(report.matches(" passed for resource ").count(), kinds.len() + 2, "{report}");

    // Hardening the issue asks for, read from the built objects.
    for needle in [
        "replicas: 2",
        "readOnlyRootFilesystem: true",
        "runAsNonRoot: true",
        "path: /healthz",
        "clusterIP: None",
        "minAvailable: 1",
        "--xds-client-ca=/etc/npm-connector/xds-tls/ca.crt",
    ] {
        assert!(built.contains(needle), "{needle} not in the built base");
    }

    // The gateway bootstrap is what `render --xds` writes today.
    let out = tmp.path().join("gateway");
    let mut args = vec!["render", "-o"];
    let out_s = out.display().to_string();
    args.push(&out_s);
    args.extend_from_slice(GATEWAY_RENDER);
    control::run(&args);
    let rendered = std::fs::read_to_string(out.join("envoy.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let golden = deploy.join("gateway/envoy.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &rendered).unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(
        std::fs::read_to_string(&golden).unwrap_or_default(),
        rendered,
        "deploy/gateway/envoy.yaml is stale: UPDATE_GOLDEN=1 cargo test -p npm-connector-tests --test deploy"
    );

    // It loads in the real Envoy, with real certificate files where the pod mounts them.
    let ca_dir = tmp.path().join("ca");
    let ca_s = ca_dir.display().to_string();
    control::run(&["ca", "init", "--dir", &ca_s]);
    let tls = tmp.path().join("xds-tls");
    control::run(&[
        "ca",
        "leaf",
        "--client",
        "--dir",
        &ca_s,
        "--host",
        "npm-gateway",
        "--out",
        &tls.display().to_string(),
    ]);
    std::fs::copy(ca_dir.join("ca.pem"), tls.join("ca.crt")).unwrap_or_else(|e| panic!("{e}"));
    let local = rendered
        .replace("/etc/envoy/xds-tls/", &format!("{}/", tls.display()))
        .replace("/run/envoy/", &format!("{}/", tmp.path().display()));
    let local_file = tmp.path().join("envoy.yaml");
    std::fs::write(&local_file, local).unwrap_or_else(|e| panic!("{e}"));
    let envoy = npm_connector_tests::tool("ENVOY_BIN", ".venv/bin/envoy");
    let (ok, log) = output(Command::new(envoy).args(["--mode", "validate", "-c"]).arg(&local_file));
    assert!(ok, "envoy --mode validate:\n{log}");

    // Every flag the base passes to serve (its container's args) and the Job to login exists.
    let (_, serve_help) = output(Command::new(control::binary()).args(["serve", "--help"]));
    let (_, login_help) = output(Command::new(control::binary()).args(["login", "--help"]));
    // serve's args are written --flag=value (Envoy's are not).
    let serve_flags: Vec<&str> =
        built.lines().filter_map(|l| l.trim().strip_prefix("- --")).filter(|f| f.contains('=')).collect();
    assert!(serve_flags.len() > 10, "{serve_flags:?}");
    for f in serve_flags {
        let name = f.split('=').next().unwrap_or(f);
        assert!(serve_help.contains(&format!("--{name}")), "serve has no --{name}");
    }
    let job = std::fs::read_to_string(deploy.join("examples/build-job.yaml")).unwrap_or_default();
    let args = job.split("args: [login,").nth(1).and_then(|r| r.split(']').next()).unwrap_or_default();
    let login_flags: Vec<&str> = args.split([',', ' ', '\n']).filter(|w| w.starts_with("--")).collect();
    assert!(login_flags.len() >= 5, "{login_flags:?}");
    for f in login_flags {
        assert!(login_help.contains(f), "login has no {f}");
    }
}
