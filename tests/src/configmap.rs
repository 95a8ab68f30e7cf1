//! A directory laid out like a Kubernetes ConfigMap volume: each update writes a new
//! timestamped directory and swaps the `..data` symlink atomically; the visible files are
//! symlinks through `..data`.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

pub struct ConfigMapDir {
    pub dir: PathBuf,
    generation: u32,
}

impl ConfigMapDir {
    pub fn new(dir: &Path) -> ConfigMapDir {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
        ConfigMapDir { dir: dir.to_owned(), generation: 0 }
    }

    /// Publishes `files` (name, contents) the way the kubelet does.
    pub fn write(&mut self, files: &[(&str, &str)]) {
        self.generation += 1;
        let gen_name = format!("..gen_{:04}", self.generation);
        let gen_dir = self.dir.join(&gen_name);
        std::fs::create_dir_all(&gen_dir).unwrap_or_else(|e| panic!("{e}"));
        for (name, text) in files {
            std::fs::write(gen_dir.join(name), text).unwrap_or_else(|e| panic!("{e}"));
        }
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        symlink(&gen_name, &tmp).unwrap_or_else(|e| panic!("{e}"));
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap_or_else(|e| panic!("{e}"));
        for (name, _) in files {
            let link = self.dir.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(Path::new("..data").join(name), &link).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        if self.generation > 1 {
            let _ = std::fs::remove_dir_all(self.dir.join(format!("..gen_{:04}", self.generation - 1)));
        }
    }
}
