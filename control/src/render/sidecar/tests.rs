//! Sidecar mode's rendering: which connections are intercepted, what passes through, the
//! client files (no proxy, the real URL, the CA bundle, the token as `_authToken`), the rules.

use serde_json::Value;

use super::super::tests::{file, load, render_fixed, sidecar_opts};
use super::*;
use crate::render::Mode;

fn listener(files: &[OutFile]) -> Value {
    let envoy = file(files, "envoy.yaml");
    let doc: Value = serde_yaml_ng::from_str(envoy).unwrap_or_else(|e| panic!("{e}"));
    doc["static_resources"]["listeners"]
        .as_array()
        .and_then(|l| l.iter().find(|l| l["name"] == SIDECAR_LISTENER))
        .cloned()
        .unwrap_or_else(|| panic!("no sidecar listener"))
}

#[test]
fn only_tls_to_a_connectors_host_and_port_is_intercepted() {
    let files = render_fixed(&load("examples/connectors.yaml"), &sidecar_opts());
    let l = listener(&files);
    let names: Vec<&str> =
        l["listener_filters"].as_array().into_iter().flatten().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "envoy.filters.listener.original_dst",
            "envoy.filters.listener.tls_inspector",
            "envoy.filters.listener.http_inspector"
        ]
    );
    let chains = l["filter_chains"].as_array().cloned().unwrap_or_default();
    assert_eq!(chains.len(), 2, "one TLS chain for nexus.example.com:443, one for plain HTTP");
    let m = &chains[0]["filter_chain_match"];
    assert_eq!(m["server_names"][0], "nexus.example.com");
    assert_eq!(m["destination_port"], 443);
    assert_eq!(m["transport_protocol"], "tls");
    let tls_filters = chains[0]["filters"][0]["typed_config"]["http_filters"].to_string();
    assert!(tls_filters.contains("envoy.filters.http.wasm") && tls_filters.contains(r#"\"role\":\"sidecar\""#));
    // Plain HTTP: no filter at all, the connector's host refused, the rest passed on.
    let plain = chains[1].to_string();
    assert!(!plain.contains("envoy.filters.http.wasm"), "no filter on plain HTTP");
    assert!(plain.contains("this registry is https only") && plain.contains("nexus.example.com"));
    assert!(plain.contains(r#""cluster":"passthrough""#));
    // Everything else: plain TCP to the original destination.
    let default = l["default_filter_chain"].to_string();
    assert!(default.contains("tcp_proxy") && default.contains(r#""cluster":"passthrough""#));
    assert!(!default.contains("wasm") && !default.contains("transport_socket"), "not decrypted, no filter");
    let envoy = file(&files, "envoy.yaml");
    assert!(envoy.contains("ORIGINAL_DST"));
    assert!(!envoy.contains("internal_listener"), "no CONNECT tunnels in a sidecar");
}

#[test]
fn client_files_keep_the_real_url_and_name_no_proxy() {
    let files = render_fixed(&load("examples/connectors.yaml"), &sidecar_opts());
    let npmrc = file(&files, "default/npm-connector/.npmrc");
    assert!(npmrc.contains("registry=https://nexus.example.com/repository/npm/\n"), "{npmrc}");
    assert!(npmrc.contains("cafile=/etc/npm-connector/default/npm-connector/ca-bundle.pem\n"), "{npmrc}");
    assert!(npmrc.contains("//nexus.example.com/repository/npm/:_authToken=npmc_"), "{npmrc}");
    let yarnrc = file(&files, "default/npm-connector/.yarnrc.yml");
    assert!(yarnrc.contains("npmAlwaysAuth: true") && yarnrc.contains("httpsCaFilePath:"), "{yarnrc}");
    let bunfig = file(&files, "default/npm-connector/bunfig.toml");
    assert!(bunfig.contains("cafile = ") && bunfig.contains("token = \"npmc_"), "{bunfig}");
    let env = file(&files, "default/npm-connector/connector.env");
    assert!(env.contains("NODE_EXTRA_CA_CERTS=") && env.contains("SSL_CERT_FILE="), "{env}");
    for f in &files {
        let text = &f.contents;
        let client = f.path.starts_with("default");
        assert!(!(client && text.to_ascii_lowercase().contains("proxy=")), "{:?} names no proxy", f.path);
        assert!(!text.contains("strict-ssl=false") && !text.contains("enableStrictSsl: false"), "{:?}", f.path);
    }
    assert!(file(&files, "default/npm-connector/ca-bundle.pem").contains("BEGIN CERTIFICATE"));
}

#[test]
fn the_rules_redirect_the_intercepted_ports_and_exclude_the_proxy() {
    let mut o = sidecar_opts();
    o.sidecar.ports = vec![80, 443, 8443];
    o.sidecar.proxy_uid = 4242;
    let script = iptables_script(&o);
    assert!(script.contains(r#"PROXY_PORT="${PROXY_PORT:-15001}""#), "{script}");
    assert!(script.contains(r#"PROXY_UID="${PROXY_UID:-4242}""#));
    assert!(script.contains(r#"PORTS="${PORTS:-80 443 8443}""#));
    assert!(script.contains("--uid-owner \"$PROXY_UID\" -j RETURN"));
    assert!(script.contains("-j REDIRECT --to-ports \"$PROXY_PORT\""));
    let c = init_container(&o);
    assert_eq!(c["securityContext"]["capabilities"]["add"], serde_json::json!(["NET_ADMIN", "NET_RAW"]));
    assert_eq!(c["args"][0], script.as_str());
    let files = render_fixed(&load("examples/connectors.yaml"), &o);
    assert_eq!(file(&files, "sidecar/iptables.sh"), script);
}

#[test]
fn sidecar_mode_needs_the_ca_and_https_host_names() {
    let mut o = sidecar_opts();
    o.tls = None;
    let cs = load("examples/connectors.yaml");
    let err = crate::render::render(&cs, &o, &mut crate::token::OsEntropy).err().map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("https-proxy and sidecar modes need the connector CA (npm-connector ca init, then --ca-dir)")
    );
    assert_eq!(Mode::Sidecar.name(), "sidecar");
    assert!(Mode::Sidecar.terminates_tls());
}

#[test]
fn serves_sidecar_mode_over_xds_with_leaves_over_sds() {
    let cs = load("examples/connectors.yaml");
    let res = crate::render::xds_resources(&cs, &sidecar_opts(), &Default::default(), &ConfigSource::Ads)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(res.secrets.len(), 1, "one leaf, over SDS");
    assert_eq!(res.extension_configs.len(), 1, "one filter configuration for every chain");
    let snap = crate::xds::snapshot::Snapshot::build(&res).unwrap_or_else(|e| panic!("{e}"));
    assert!(!snap.types[crate::xds::LISTENER].resources.is_empty());
    // Revoking every connector leaves the passthrough in place.
    let empty = crate::render::xds_resources(&[], &sidecar_opts(), &Default::default(), &ConfigSource::Ads)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(empty.secrets.is_empty() && empty.extension_configs.is_empty());
    crate::xds::snapshot::Snapshot::build(&empty).unwrap_or_else(|e| panic!("{e}"));
}
