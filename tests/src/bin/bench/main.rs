//! `make bench`: the filter's cost per request (against bare Envoy and the native
//! credential_injector), the control plane's speed, `npm install` of a real tree through each
//! client path, and Envoy's start at 10,000 connectors, in one run; writes BENCHMARKS.md.
//! `BENCH_ONLY=filter|instr|rewrite|control|exchange|install|scale` runs one part (and leaves BENCHMARKS.md alone).

mod control;
mod exchange;
mod filter;
mod install;
mod instr;
mod rewrite;
mod scale;

/// The allocator of the `npm-connector` binary, so that in-process renders measure what the
/// CLI does.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A number from the environment, for quicker looks.
pub fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A process's CPU time so far (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<f64>().ok()).sum();
    ticks / 100.0
}

/// The middle value of a bench's rounds (the upper one of an even count).
fn median<T: PartialOrd + Copy>(v: impl IntoIterator<Item = T>) -> T {
    let mut v: Vec<T> = v.into_iter().collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn main() {
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let mut sections = Vec::new();
    if only.is_empty() || only == "filter" {
        sections.push(filter::run());
    }
    if only.is_empty() || only == "instr" {
        sections.push(instr::run());
    }
    if only.is_empty() || only == "rewrite" {
        sections.push(rewrite::run());
    }
    if only.is_empty() || only == "control" {
        sections.push(control::run());
    }
    if only.is_empty() || only == "exchange" {
        sections.push(exchange::run());
    }
    if only.is_empty() || only == "install" {
        sections.push(install::run());
    }
    if only.is_empty() || only == "scale" {
        sections.push(scale::run());
    }
    if !only.is_empty() {
        // One part: its section on stdout, BENCHMARKS.md untouched.
        println!("{}", sections.join("\n"));
    } else {
        let report = format!(
            "# Benchmarks\n\nRecorded by `make bench` (tests/src/bin/bench/); every figure below comes from one run on one \
             machine, so compare rows with each other, not with other machines.\n\n{}",
            sections.join("\n")
        );
        std::fs::write(npm_connector_tests::root().join("BENCHMARKS.md"), report).unwrap_or_else(|e| panic!("{e}"));
        println!("wrote BENCHMARKS.md");
    }
}
