//! `npm-connector image`: the filter's `.wasm` as an OCI image layout for Istio's WasmPlugin.

use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args)]
pub struct ImageArgs {
    /// The filter module.
    #[arg(long, default_value = npm_connector::render::DEFAULT_WASM)]
    wasm: PathBuf,
    /// The OCI image layout directory to write (push it with `skopeo copy oci:DIR:TAG docker://…`).
    #[arg(short, long)]
    out: PathBuf,
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    tag: String,
    /// Also write the layout as one tar file (`skopeo copy oci-archive:FILE …`).
    #[arg(long)]
    tar: Option<PathBuf>,
}

pub fn run(a: ImageArgs) -> Result<()> {
    let w = npm_connector::image::write_layout(&a.wasm, &a.out, &a.tag)?;
    println!("wrote oci:{}:{} (manifest {}; module {})", a.out.display(), a.tag, w.manifest_digest, w.wasm_digest);
    if let Some(t) = &a.tar {
        npm_connector::image::write_archive(&a.out, t)?;
        println!("wrote oci-archive:{}", t.display());
    }
    Ok(())
}
