//! The `npm-connector` command line.

mod cli;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Rendering thousands of connectors builds and frees millions of small JSON values, which
/// mimalloc handles faster than glibc's allocator (seen while profiling; the render figures in
/// BENCHMARKS.md are taken with it, not compared against glibc there).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "npm-connector",
    version,
    about = "Lets build pods use private npm registries without holding the credential"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Render client files and an Envoy bootstrap from Connector and Secret manifests.
    Render(Box<cli::render::RenderArgs>),
    /// Make a key that seals credentials in Envoy's configuration.
    Keygen(cli::keygen::KeygenArgs),
    /// Run the xDS control plane over a directory of manifests.
    Serve(Box<cli::serve::ServeArgs>),
    /// Mint a client token for a connector, with a TTL (for `serve --state`).
    Token(cli::token::TokenArgs),
    /// The connector CA for HTTPS-proxy mode.
    Ca(cli::ca::CaArgs),
    /// Package the filter as an OCI image layout (Istio's Wasm image spec) for a WasmPlugin.
    Image(cli::image::ImageArgs),
    /// Exchange this pod's or CI job's ID token for a connector token and write client files.
    Login(Box<cli::login::LoginArgs>),
}

fn main() -> Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    match Cli::parse().command {
        Cmd::Render(a) => cli::render::run(*a),
        Cmd::Keygen(a) => cli::keygen::run(a),
        Cmd::Serve(a) => cli::serve::run(*a),
        Cmd::Token(a) => cli::token::run(a),
        Cmd::Ca(a) => cli::ca::run(a),
        Cmd::Login(a) => cli::login::run(*a),
        Cmd::Image(a) => cli::image::run(a),
    }
}
