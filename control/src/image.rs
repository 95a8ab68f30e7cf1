//! The filter as an OCI image (`npm-connector image`), in the "oci" variant of the Wasm image
//! specification Istio's WasmPlugin pulls: one layer of media type
//! `application/vnd.module.wasm.content.layer.v1+wasm` holding the module, and a config of
//! media type `application/vnd.module.wasm.config.v1+json` naming the runtime and root id.
//! Written as an OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/`).

use std::path::Path;

use oci_spec::image::{
    Descriptor, DescriptorBuilder, ImageIndexBuilder, ImageManifestBuilder, MediaType, Sha256Digest,
};
use sha2::{Digest as _, Sha256};

pub const LAYER_MEDIA_TYPE: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.module.wasm.config.v1+json";
/// The filter's root context id (its `root_id` in Envoy and in a WasmPlugin).
pub const ROOT_ID: &str = "npm_connector";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error("OCI image: {0}")]
    Oci(String),
    #[error("{0} is not a Wasm module (no \\0asm header)")]
    NotWasm(String),
}

/// What was written: the manifest's digest (what `WasmPlugin.spec.sha256` pins) and the
/// module's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub manifest_digest: String,
    pub wasm_digest: String,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn oci(e: impl std::fmt::Display) -> ImageError {
    ImageError::Oci(e.to_string())
}

/// Stores `bytes` as a blob; its descriptor.
fn blob(out: &Path, media: MediaType, bytes: &[u8], title: Option<&str>) -> Result<Descriptor, ImageError> {
    let hex = sha256_hex(bytes);
    let dir = out.join("blobs/sha256");
    std::fs::create_dir_all(&dir).map_err(|e| ImageError::Io(dir.display().to_string(), e))?;
    let path = dir.join(&hex);
    std::fs::write(&path, bytes).map_err(|e| ImageError::Io(path.display().to_string(), e))?;
    let digest: Sha256Digest = hex.parse().map_err(oci)?;
    let mut d = DescriptorBuilder::default().media_type(media).digest(digest).size(bytes.len() as u64);
    if let Some(t) = title {
        d = d.annotations([("org.opencontainers.image.title".to_owned(), t.to_owned())]);
    }
    d.build().map_err(oci)
}

/// The layout directory `dir` as one tar file (`oci-archive:` to skopeo and podman), its
/// entries in a fixed order with fixed metadata, so the same module gives the same archive.
pub fn write_archive(dir: &Path, archive: &Path) -> Result<(), ImageError> {
    let io = |e: std::io::Error| ImageError::Io(archive.display().to_string(), e);
    let file = std::fs::File::create(archive).map_err(io)?;
    let mut tar = tar::Builder::new(file);
    let mut entries: Vec<std::path::PathBuf> = vec!["oci-layout".into(), "index.json".into()];
    let blobs = dir.join("blobs/sha256");
    let mut names: Vec<String> = std::fs::read_dir(&blobs)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    entries.extend(names.into_iter().map(|n| Path::new("blobs/sha256").join(n)));
    for rel in entries {
        let bytes = std::fs::read(dir.join(&rel)).map_err(io)?;
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, &rel, bytes.as_slice()).map_err(io)?;
    }
    tar.into_inner().map_err(io)?;
    Ok(())
}

/// Writes the OCI image layout of `wasm` into `out`, tagged `tag`.
pub fn write_layout(wasm_path: &Path, out: &Path, tag: &str) -> Result<Written, ImageError> {
    let wasm = std::fs::read(wasm_path).map_err(|e| ImageError::Io(wasm_path.display().to_string(), e))?;
    if !wasm.starts_with(b"\0asm") {
        return Err(ImageError::NotWasm(wasm_path.display().to_string()));
    }
    let config = serde_json::json!({
        "type": "envoy_proxy",
        // The proxy-wasm ABI the module exports (`proxy_abi_version_0_2_1`).
        "abiVersions": ["proxy_abi_version_0_2_1"],
        "config": {"root_ids": [ROOT_ID]},
    })
    .to_string();
    let config_d =
        blob(out, MediaType::Other(CONFIG_MEDIA_TYPE.into()), config.as_bytes(), Some("runtime-config.json"))?;
    let layer_d = blob(out, MediaType::Other(LAYER_MEDIA_TYPE.into()), &wasm, Some("plugin.wasm"))?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_d)
        .layers(vec![layer_d])
        .build()
        .map_err(oci)?;
    let manifest_json = serde_json::to_vec(&manifest).map_err(oci)?;
    let manifest_d = blob(out, MediaType::ImageManifest, &manifest_json, None)?;
    let mut indexed = manifest_d.clone();
    indexed.set_annotations(Some([("org.opencontainers.image.ref.name".to_owned(), tag.to_owned())].into()));
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![indexed])
        .build()
        .map_err(oci)?;
    let write = |name: &str, bytes: &[u8]| {
        let p = out.join(name);
        std::fs::write(&p, bytes).map_err(|e| ImageError::Io(p.display().to_string(), e))
    };
    write("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    write("index.json", &serde_json::to_vec(&index).map_err(oci)?)?;
    Ok(Written {
        manifest_digest: manifest_d.digest().to_string(),
        wasm_digest: format!("sha256:{}", sha256_hex(&wasm)),
    })
}
