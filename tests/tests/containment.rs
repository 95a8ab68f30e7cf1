//! Credential containment, tried as a hostile build pod would: a table of requests in gateway
//! and https-proxy mode (on the CONNECT and inside the tunnel) with odd authorities, every
//! method, duplicate auth headers. The assertions are at the receiving end: recording fronts
//! stand for connector A's registry port, connector B's (same host, another port) and another
//! host, and record every request that reaches them, TLS or cleartext. The credential may
//! arrive only at its own connector's port over TLS; a connector token arrives nowhere.

use base64::Engine as _;
use npm_connector::render::Mode;
use npm_connector_tests::front::{self, Front};
use npm_connector_tests::scenario;
use npm_connector_tests::{clients, pki};

const REG: &str = "registry.test";
/// Recorder indexes of the front.
const A: usize = 0;
const B: usize = 1;
const OTHER: usize = 2;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn manifests(a_port: u16, b_port: u16, cred_a: &str, cred_b: &str) -> String {
    let mut y = String::new();
    for (team, port, pw) in [("team-a", a_port, cred_a), ("team-b", b_port, cred_b)] {
        y += &format!(
            "kind: Secret\nmetadata:\n  name: reg\n  namespace: {team}\ntype: kubernetes.io/basic-auth\n\
             stringData:\n  username: {team}-user\n  password: \"{pw}\"\n---\n\
             kind: Connector\nmetadata:\n  name: npm\n  namespace: {team}\n\
             spec:\n  connectorClassName: npm\n  address: https://{REG}:{port}/\n  auth:\n    name: basicAuth\n\
             \x20   secretRef:\n      name: reg\n---\n"
        );
    }
    y
}

/// Sends raw bytes, returns the status code of the first response line ("" if none).
fn raw(port: u16, request: &str) -> String {
    clients::raw_http(port, request).split_whitespace().nth(1).unwrap_or_default().to_owned()
}

/// (name, connector user, whose token, URL, extra curl arguments, status, where it ends)
type TunnelCase = (&'static str, &'static str, &'static str, String, Vec<String>, &'static str, Want);

/// Where a case's request must end: at which recorder, with which credential (`None`: nowhere).
type Want = Option<(usize, &'static str)>;

struct Case {
    name: String,
    status: &'static str,
    at: Want,
}

struct Run {
    front: Front,
    cred: [String; 2],
    tokens: Vec<String>,
    failures: Vec<String>,
    count: usize,
    /// One line per case, for the report.
    table: Vec<String>,
}

impl Run {
    /// Checks one case: its status, and that exactly the expected recorder saw it, with the
    /// expected credential and never a connector token.
    fn check(&mut self, c: Case, got: &str) {
        self.count += 1;
        let at = match c.at {
            None => "nowhere".to_owned(),
            Some((r, cred)) => {
                let who = ["A's port", "B's port", "other host"][r];
                if cred.is_empty() {
                    format!("{who}, no credential")
                } else {
                    format!("{who}, {cred}'s credential over TLS")
                }
            }
        };
        self.table.push(format!("| {} | {got} | {at} |", c.name));
        let mut problems = Vec::new();
        if got != c.status {
            problems.push(format!("status {got}, want {}", c.status));
        }
        for i in [A, B, OTHER] {
            let seen = self.front.case(i, &c.name);
            let want_here = matches!(c.at, Some((r, _)) if r == i);
            if seen.is_empty() == want_here {
                problems.push(format!("recorder {i} saw {} request(s)", seen.len()));
            }
            for s in &seen {
                let auth = s.header("authorization").unwrap_or_default();
                let expected = match c.at {
                    Some((_, "A")) => format!("Basic {}", b64(&format!("team-a-user:{}", self.cred[0]))),
                    Some((_, "B")) => format!("Basic {}", b64(&format!("team-b-user:{}", self.cred[1]))),
                    _ => String::new(),
                };
                if auth != expected {
                    problems.push(format!("recorder {i} got authorization {auth:?}, want {expected:?}"));
                }
                if s.header("x-arrived") != Some("tls") && !expected.is_empty() {
                    problems.push(format!("recorder {i}: the credential arrived in clear"));
                }
                if s.header("proxy-authorization").is_some() {
                    problems.push(format!("recorder {i} got a Proxy-Authorization"));
                }
            }
        }
        if !problems.is_empty() {
            self.failures.push(format!("{}: {}", c.name, problems.join("; ")));
        }
    }
}

fn case(name: impl Into<String>, status: &'static str, at: Want) -> Case {
    Case { name: name.into(), status, at }
}

#[test]
fn credentials_reach_only_their_own_registry_over_tls() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let d = dir.path();
    let pki = pki::make(d, &[REG, "127.0.0.1"]);
    let front = front::start(d, &pki, 3);
    let (ap, bp, op) = (front.ports[A], front.ports[B], front.ports[OTHER]);
    let cred = [b64("cred-a-secret-1"), b64("cred-b-secret-2")];
    let yaml = manifests(ap, bp, &cred[0], &cred[1]);
    let key = npm_connector::token::new_key().unwrap_or_else(|e| panic!("{e}"));
    let (gw, gw_tokens) = scenario::render_and_start(d, Mode::Gateway, &pki.ca_cert, &key, &yaml, "gw", None);
    let (hp, hp_tokens) = scenario::render_and_start(d, Mode::HttpsProxy, &pki.ca_cert, &key, &yaml, "hp", None);
    let mut tokens: Vec<String> = gw_tokens.values().chain(hp_tokens.values()).cloned().collect();
    tokens.sort();
    let mut run = Run { front, cred, tokens, failures: Vec::new(), count: 0, table: Vec::new() };

    // ---- gateway mode: raw requests to the gateway listener.
    let (ta, tb) = (gw_tokens["team-a/npm"].clone(), gw_tokens["team-b/npm"].clone());
    let g = gw.port;
    let host = format!("127.0.0.1:{g}");
    let bearer_a = format!("Authorization: Bearer {ta}\r\n");
    let bearer_b = format!("Authorization: Bearer {tb}\r\n");
    let basic_a = format!("Authorization: Basic {}\r\n", b64(&format!("x:{ta}")));
    let gw_cases: Vec<(String, String, &'static str, Want)> = vec![
        ("g-own".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: {host}\r\n{bearer_a}"), "200", Some((A, "A"))),
        ("g-basic".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: {host}\r\n{basic_a}"), "200", Some((A, "A"))),
        ("g-b".into(), format!("GET /team-b/npm/p HTTP/1.1\r\nHost: {host}\r\n{bearer_b}"), "200", Some((B, "B"))),
        ("g-b-token-on-a".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: {host}\r\n{bearer_b}"), "403", None),
        ("g-a-token-on-b".into(), format!("GET /team-b/npm/p HTTP/1.1\r\nHost: {host}\r\n{bearer_a}"), "403", None),
        ("g-no-token".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: {host}\r\n"), "401", None),
        ("g-unknown-path".into(), format!("GET /nobody/x HTTP/1.1\r\nHost: {host}\r\n{bearer_a}"), "404", None),
        ("g-dot-segment".into(), format!("GET /team-a/npm/..%2f..%2fx HTTP/1.1\r\nHost: {host}\r\n{bearer_a}"), "400", None),
        ("g-trailing-dot".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: 127.0.0.1.:{g}\r\n{bearer_a}"), "400", None),
        ("g-zero-port".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: 127.0.0.1:0{g}\r\n{bearer_a}"), "400", None),
        ("g-plus-port".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: 127.0.0.1:+{g}\r\n{bearer_a}"), "400", None),
        ("g-big-port".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: 127.0.0.1:65536\r\n{bearer_a}"), "400", None),
        ("g-upper".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: LOCALHOST:{g}\r\n{bearer_a}"), "200", Some((A, "A"))),
        ("g-ipv6".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: [::1]:{g}\r\n{bearer_a}"), "200", Some((A, "A"))),
        ("g-userinfo".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: u@127.0.0.1:{g}\r\n{bearer_a}"), "400", None),
        ("g-userinfo-other".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: 127.0.0.1:{g}@other.test\r\n{bearer_a}"), "400", None),
        ("g-percent".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: 127.0.0.%31:{g}\r\n{bearer_a}"), "400", None),
        ("g-bracket".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: [127.0.0.1\r\n{bearer_a}"), "400", None),
        ("g-duplicate-host".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: {host}\r\nHost: other.test\r\n{bearer_a}"), "400", None),
        ("g-absolute-other".into(), format!("GET http://other.test:{op}/team-a/npm/p HTTP/1.1\r\nHost: {host}\r\n{bearer_a}"), "200", Some((A, "A"))),
        // Envoy routes an absolute-form request on its Host and path (the URI's authority,
        // userinfo and all, decides nothing): A's route, so A's registry over TLS.
        ("g-absolute-userinfo".into(), format!("GET http://u:p@127.0.0.1:{g}/team-a/npm/p HTTP/1.1\r\nHost: {host}\r\n{bearer_a}"), "200", Some((A, "A"))),
        ("g-dup-auth-good-first".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: {host}\r\n{bearer_a}Authorization: Basic eDp5\r\n"), "403", None),
        ("g-dup-auth-good-last".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic eDp5\r\n{bearer_a}"), "403", None),
        ("g-proxy-auth-extra".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: {host}\r\n{bearer_a}Proxy-Authorization: Bearer {ta}\r\n"), "200", Some((A, "A"))),
        ("g-dup-proxy-auth".into(), format!("GET /team-a/npm/p HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: Bearer {tb}\r\n{bearer_a}Proxy-Authorization: Bearer {ta}\r\n"), "200", Some((A, "A"))),
    ];
    let mut all: Vec<(String, String, &'static str, Want)> = gw_cases;
    for (m, status, at) in [
        ("GET", "200", Some((A, "A"))),
        ("HEAD", "200", Some((A, "A"))),
        ("PUT", "200", Some((A, "A"))),
        ("POST", "200", Some((A, "A"))),
        ("DELETE", "200", Some((A, "A"))),
        ("TRACE", "405", None),
        // Envoy's HTTP/1 codec refuses methods it does not know before any filter.
        ("TRACK", "400", None),
        ("OPTIONS", "405", None),
        ("PATCH", "405", None),
        ("PROPFIND", "405", None),
    ] {
        all.push((
            format!("g-method-{m}"),
            format!("{m} /team-a/npm/p HTTP/1.1\r\nHost: {host}\r\n{bearer_a}"),
            status,
            at,
        ));
    }
    for (name, req, status, at) in all {
        let req = format!("{req}x-case: {name}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        let got = raw(g, &req);
        run.check(case(name, status, at), &got);
    }

    // ---- https-proxy mode: the CONNECT itself.
    let (ha, hb) = (hp_tokens["team-a/npm"].clone(), hp_tokens["team-b/npm"].clone());
    let h = hp.port;
    let pa = |user: &str, t: &str| format!("Proxy-Authorization: Basic {}\r\n", b64(&format!("{user}:{t}")));
    let (good, bad, b_good) = (pa("team-a/npm", &ha), pa("team-a/npm", "npmc_wrong"), pa("team-b/npm", &hb));
    let connect_cases: Vec<(&str, String, String, &'static str)> = vec![
        ("c-own", format!("{REG}:{ap}"), good.clone(), "200"),
        ("c-no-token", format!("{REG}:{ap}"), String::new(), "407"),
        ("c-bad-token", format!("{REG}:{ap}"), bad.clone(), "403"),
        ("c-b-token-a-port", format!("{REG}:{ap}"), b_good.clone(), "403"),
        ("c-b-own", format!("{REG}:{bp}"), b_good.clone(), "200"),
        ("c-trailing-dot", format!("{REG}.:{ap}"), good.clone(), "400"),
        ("c-zero-port", format!("{REG}:0{ap}"), good.clone(), "400"),
        ("c-plus-port", format!("{REG}:+{ap}"), good.clone(), "400"),
        ("c-no-port", REG.to_owned(), good.clone(), "400"),
        ("c-userinfo", format!("u@{REG}:{ap}"), good.clone(), "400"),
        ("c-upper", format!("REGISTRY.TEST:{ap}"), good.clone(), "200"),
        ("c-other-blind", format!("127.0.0.1:{op}"), good.clone(), "200"),
        ("c-other-no-token", format!("127.0.0.1:{op}"), String::new(), "407"),
        ("c-other-bad-token", format!("127.0.0.1:{op}"), bad.clone(), "403"),
        ("c-dup-proxy-auth-good-first", format!("{REG}:{ap}"), format!("{good}{bad}"), "403"),
        ("c-dup-proxy-auth-good-last", format!("{REG}:{ap}"), format!("{bad}{good}"), "403"),
    ];
    for (name, authority, auth, status) in connect_cases {
        let got = raw(h, &format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}x-case: {name}\r\n\r\n"));
        run.check(case(name, status, None), &got);
    }
    for (name, req) in [
        ("c-plain-get", format!("GET http://{REG}:{ap}/p HTTP/1.1\r\nHost: {REG}:{ap}\r\n{good}")),
        ("c-trace", format!("TRACE / HTTP/1.1\r\nHost: {REG}:{ap}\r\n{good}")),
    ] {
        let got = raw(h, &format!("{req}x-case: {name}\r\nconnection: close\r\n\r\n"));
        run.check(case(name, "405", None), &got);
    }

    // ---- https-proxy mode: inside tunnels, with curl as the TLS client.
    let bundle = d.join("hp/team-a/npm/ca-bundle.pem");
    let through = |user: &str, token: &str, url: &str, extra: &[&str]| -> String {
        let proxy = format!("http://{}:{token}@127.0.0.1:{h}", user.replace('/', "%2F"));
        let mut args = vec!["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"];
        let b = bundle.display().to_string();
        args.push(&b);
        args.extend(["-x", &proxy, "--proxytunnel", "--path-as-is"]);
        args.extend(extra);
        args.push(url);
        clients::curl(&args).stdout.trim().to_owned()
    };
    let url_a = format!("https://{REG}:{ap}/p");
    let url_b = format!("https://{REG}:{bp}/p");
    let tunnel_cases: Vec<TunnelCase> = vec![
        ("t-own", "team-a/npm", "a", url_a.clone(), vec![], "200", Some((A, "A"))),
        ("t-b-own", "team-b/npm", "b", url_b.clone(), vec![], "200", Some((B, "B"))),
        ("t-put", "team-a/npm", "a", url_a.clone(), vec!["-X".into(), "PUT".into()], "200", Some((A, "A"))),
        ("t-delete", "team-a/npm", "a", url_a.clone(), vec!["-X".into(), "DELETE".into()], "200", Some((A, "A"))),
        ("t-trace", "team-a/npm", "a", url_a.clone(), vec!["-X".into(), "TRACE".into()], "405", None),
        ("t-options", "team-a/npm", "a", url_a.clone(), vec!["-X".into(), "OPTIONS".into()], "405", None),
        (
            "t-host-b-port",
            "team-a/npm",
            "a",
            url_a.clone(),
            vec!["-H".into(), format!("Host: {REG}:{bp}")],
            "403",
            None,
        ),
        (
            "t-host-other",
            "team-a/npm",
            "a",
            url_a.clone(),
            vec!["-H".into(), format!("Host: other.test:{ap}")],
            "403",
            None,
        ),
        (
            "t-host-trailing-dot",
            "team-a/npm",
            "a",
            url_a.clone(),
            vec!["-H".into(), format!("Host: {REG}.:{ap}")],
            "400",
            None,
        ),
        (
            "t-host-userinfo",
            "team-a/npm",
            "a",
            url_a.clone(),
            vec!["-H".into(), format!("Host: u@{REG}:{ap}")],
            "400",
            None,
        ),
        (
            "t-host-upper",
            "team-a/npm",
            "a",
            url_a.clone(),
            vec!["-H".into(), format!("Host: REGISTRY.TEST:{ap}")],
            "200",
            Some((A, "A")),
        ),
        (
            "t-dup-auth",
            "team-a/npm",
            "a",
            url_a.clone(),
            vec!["-H".into(), "Authorization: Bearer x".into(), "-H".into(), "Authorization: Bearer y".into()],
            "200",
            Some((A, "A")),
        ),
        (
            "t-other-token-in-auth",
            "team-a/npm",
            "a",
            url_a.clone(),
            vec!["-H".into(), format!("Authorization: Bearer {hb}")],
            "200",
            Some((A, "A")),
        ),
        ("t-blind-https", "team-a/npm", "a", format!("https://127.0.0.1:{op}/p"), vec![], "200", Some((OTHER, ""))),
        ("t-blind-http", "team-a/npm", "a", format!("http://127.0.0.1:{op}/p"), vec![], "200", Some((OTHER, ""))),
    ];
    for (name, user, which, url, extra, status, at) in tunnel_cases {
        let token = if which == "a" { ha.clone() } else { hb.clone() };
        let mut args: Vec<&str> = extra.iter().map(String::as_str).collect();
        let tag = format!("x-case: {name}");
        args.extend(["-H", &tag]);
        let got = through(user, &token, &url, &args);
        run.check(case(name, status, at), &got);
    }

    // The two refused blind CONNECTs (no token, wrong token) are counted as such.
    assert_eq!(hp.counter("wasmcustom.npm_connector.refused_blind_token"), 2);
    assert!(hp.counter("wasmcustom.npm_connector.tunnels_blind") >= 3);

    // ---- https-proxy with --unmatched deny: only connectors' endpoints and the tunnel hosts a
    // Connector lists (here the "other" port, standing for a CDN) are tunnelled.
    let deny_yaml = yaml.replace(
        "  name: npm\n  namespace: team-a\n",
        &format!(
            "  name: npm\n  namespace: team-a\n  annotations:\n    npm-connector.io/tunnel-hosts: \"127.0.0.1:{op}\"\n"
        ),
    );
    let (deny, deny_tokens) = scenario::render_deny(d, &pki.ca_cert, &key, &deny_yaml, "hp-deny");
    run.tokens.extend(deny_tokens.values().cloned());
    let dgood = pa("team-a/npm", &deny_tokens["team-a/npm"]);
    let unlisted = npm_connector_tests::procs::free_port();
    for (name, authority, auth, status) in [
        ("d-own", format!("{REG}:{ap}"), dgood.clone(), "200"),
        ("d-tunnel-host", format!("127.0.0.1:{op}"), dgood.clone(), "200"),
        ("d-tunnel-host-no-token", format!("127.0.0.1:{op}"), String::new(), "407"),
        ("d-unlisted", format!("127.0.0.1:{unlisted}"), dgood.clone(), "403"),
        ("d-unlisted-registry-port", format!("{REG}:{op}"), dgood.clone(), "403"),
    ] {
        let got = raw(
            deny.port,
            &format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{auth}x-case: {name}\r\n\r\n"),
        );
        run.check(case(name, status, None), &got);
    }

    // Nothing anywhere ever held a connector token.
    for s in run.front.all() {
        for t in &run.tokens {
            assert!(!s.headers.iter().any(|(_, v)| v.contains(t.as_str())), "a connector token reached {s:?}");
        }
        assert!(!s.headers.iter().any(|(_, v)| v.contains("npmc_")), "{s:?}");
    }
    let summary = format!("{} cases, {} failed", run.count, run.failures.len());
    assert!(run.failures.is_empty(), "{summary}:\n{}", run.failures.join("\n"));
    assert!(run.count >= 60, "{summary}");
    eprintln!("containment: {summary}\n| case | status | arrived |\n|---|---|---|\n{}", run.table.join("\n"));
    drop(gw);
    drop(hp);
    drop(deny);
}
