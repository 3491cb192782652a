//! Finding CUDA's shared libraries before cudarc asks for them.
//!
//! cudarc loads the driver (libcuda), NVRTC and cuBLAS at run time by
//! file name (`libnvrtc.so.13`, `libnvrtc.so.12`, …), so on its own it
//! finds only what the dynamic loader's path holds. GPU machines often
//! keep these libraries elsewhere: a CUDA toolkit in /usr/local/cuda that
//! ldconfig was never told of, or the wheels PyTorch installs
//! (`site-packages/nvidia/cu13/lib`). So before any CUDA call the agent
//! looks in the directories the operator names (`--cuda-lib-dir`), then in
//! the usual places, and loads each missing library it finds by its full
//! path. A library loaded so is known to the loader by its soname, and
//! cudarc's later request by that name gets it.
//!
//! Nothing here calls into a library, and a library found nowhere is not
//! an error: the agent then offers no kind that needs it.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// A library cudarc loads at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    Driver,
    Nvrtc,
    Cublas,
}

impl Library {
    /// In dependency order: cuBLAS needs the driver.
    pub const ALL: [Library; 3] = [Library::Driver, Library::Nvrtc, Library::Cublas];

    /// The name cudarc builds its candidate file names from.
    pub fn name(self) -> &'static str {
        match self {
            Library::Driver => "cuda",
            Library::Nvrtc => "nvrtc",
            Library::Cublas => "cublas",
        }
    }

    /// Whether cudarc can load it now.
    pub fn present(self) -> bool {
        match self {
            Library::Driver => crate::gpu::driver_present(),
            Library::Nvrtc => crate::gpu::nvrtc_present(),
            Library::Cublas => crate::gpu::cublas_present(),
        }
    }

    /// Libraries in the same directory that must be loaded first, by file
    /// name prefix. A toolkit's libcublas.so names libcublasLt.so as a
    /// dependency but carries no run path to find it, NVRTC opens its
    /// builtins library by name when it compiles, and NVML (for GPU
    /// temperature and utilization) ships beside the driver.
    fn companions(self) -> &'static [&'static str] {
        match self {
            Library::Driver => &["libnvidia-ml.so."],
            Library::Nvrtc => &["libnvrtc-builtins.so."],
            Library::Cublas => &["libcublasLt.so."],
        }
    }
}

/// Where a library was found, for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub library: &'static str,
    /// `"loader path"` when the system's loader found it on its own, the
    /// file loaded when it was found here, or `None`.
    pub found: Option<String>,
}

/// The directories to search, in order: the operator's own first, then
/// `$CUDA_HOME`/`$CUDA_PATH`, the usual toolkit and driver places, and
/// the NVIDIA wheels of the usual Python environments. Only directories
/// that exist are kept, each once.
pub fn search_dirs(operator: &[PathBuf]) -> Vec<PathBuf> {
    search_dirs_with(operator, |name| std::env::var_os(name))
}

/// [`search_dirs`] with the environment given.
fn search_dirs_with(
    operator: &[PathBuf],
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = operator.to_vec();
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(root) = env(var) {
            let root = PathBuf::from(root);
            dirs.push(root.join("lib64"));
            dirs.push(root.join("lib"));
        }
    }
    dirs.push("/usr/local/cuda/lib64".into());
    dirs.push("/usr/local/cuda/targets/x86_64-linux/lib".into());
    // Versioned toolkits, newest first.
    let mut versioned = children(Path::new("/usr/local"), |n| n.starts_with("cuda-"));
    versioned.sort_by(|a, b| b.cmp(a));
    dirs.extend(versioned.into_iter().map(|d| d.join("lib64")));
    // The driver as container runtimes and WSL mount it.
    dirs.push("/usr/local/nvidia/lib64".into());
    dirs.push("/usr/lib/wsl/lib".into());
    // pip's NVIDIA wheels: site-packages/nvidia/<package>/lib.
    let mut environments: Vec<PathBuf> = ["VIRTUAL_ENV", "CONDA_PREFIX"]
        .iter()
        .filter_map(|v| env(v).map(PathBuf::from))
        .collect();
    environments.extend(["/usr/local", "/usr", "/opt/conda"].map(PathBuf::from));
    environments.extend(
        children(Path::new("/opt"), |_| true)
            .into_iter()
            .map(|d| d.join(".venv")),
    );
    for env in environments {
        for python in children(&env.join("lib"), |n| n.starts_with("python3")) {
            for packages in ["site-packages", "dist-packages"] {
                let nvidia = python.join(packages).join("nvidia");
                dirs.extend(
                    children(&nvidia, |_| true)
                        .into_iter()
                        .map(|p| p.join("lib")),
                );
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| d.is_dir() && seen.insert(d.clone()));
    dirs
}

/// The subdirectories of `dir` whose names pass `keep`; none if it
/// cannot be read.
fn children(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir() && e.file_name().to_str().is_some_and(&keep))
        .map(|e| e.path())
        .collect()
}

/// Makes every library cudarc needs loadable where it can be found: the
/// loader's own path first, then `dirs`. Returns where each was found.
pub fn prepare(dirs: &[PathBuf]) -> Vec<Status> {
    Library::ALL
        .iter()
        .map(|&library| {
            let found = if library.present() {
                Some("loader path".to_string())
            } else {
                find_and_load(library, dirs).map(|p| p.display().to_string())
            };
            match &found {
                Some(at) => {
                    tracing::info!(library = library.name(), at = %at, "CUDA library found")
                }
                None => tracing::info!(library = library.name(), "CUDA library not found"),
            }
            Status {
                library: library.name(),
                found,
            }
        })
        .collect()
}

/// Loads the first file in `dirs` named as cudarc would ask for
/// `library`, and returns it once cudarc can load the library.
fn find_and_load(library: Library, dirs: &[PathBuf]) -> Option<PathBuf> {
    let names = cudarc::get_lib_name_candidates(library.name());
    for dir in dirs {
        for name in &names {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            for prefix in library.companions() {
                if let Some(companion) = shortest_with_prefix(dir, prefix) {
                    if let Err(e) = load_global(&companion) {
                        tracing::warn!(path = %companion.display(), error = %e, "cannot load");
                    }
                }
            }
            match load_global(&path) {
                // A file whose soname cudarc never asks for (a bare
                // libnvrtc.so pointing at another major version) loads
                // but does not help: keep looking.
                Ok(()) if library.present() => return Some(path),
                Ok(()) => {}
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot load"),
            }
        }
    }
    None
}

/// The shortest file name in `dir` starting with `prefix` (the soname
/// rather than its fully versioned file, where both exist).
fn shortest_with_prefix(dir: &Path, prefix: &str) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with(prefix))
        .min_by_key(|n| (n.len(), n.clone()))
        .map(|n| dir.join(n))
}

/// Loads a shared library by path for the life of the process, with its
/// symbols global (as cudarc's own later load of it would be).
fn load_global(path: &Path) -> Result<(), String> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| "path contains a NUL byte".to_string())?;
    // SAFETY: dlopen runs the library's initializers; these are CUDA's own
    // libraries, the same ones cudarc would load. The handle is never
    // closed, so nothing from the library is ever unmapped under a caller.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns null or a C string valid until the next
        // dl* call on this thread; it is copied at once.
        let message = unsafe {
            let e = libc::dlerror();
            if e.is_null() {
                "unknown error".to_string()
            } else {
                CStr::from_ptr(e).to_string_lossy().into_owned()
            }
        };
        return Err(message);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_directories_come_first_and_only_existing_ones_stay() -> std::io::Result<()> {
        let a = tempfile::tempdir()?;
        let b = tempfile::tempdir()?;
        let missing = a.path().join("not-there");
        let dirs = search_dirs(&[
            b.path().to_path_buf(),
            missing.clone(),
            a.path().to_path_buf(),
            b.path().to_path_buf(),
        ]);
        assert_eq!(dirs[0], b.path());
        assert_eq!(dirs[1], a.path());
        assert!(!dirs.contains(&missing));
        assert_eq!(dirs.iter().filter(|d| *d == b.path()).count(), 1);
        Ok(())
    }

    #[test]
    fn finds_the_nvidia_wheels_of_a_python_environment() -> std::io::Result<()> {
        let venv = tempfile::tempdir()?;
        let lib = venv
            .path()
            .join("lib/python3.12/site-packages/nvidia/cu13/lib");
        std::fs::create_dir_all(&lib)?;
        let dirs = search_dirs_with(&[], |name| {
            (name == "VIRTUAL_ENV").then(|| venv.path().as_os_str().to_owned())
        });
        assert!(dirs.contains(&lib), "{dirs:?}");
        Ok(())
    }

    #[test]
    fn a_companion_is_found_by_its_shortest_name() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        for name in [
            "libcublasLt.so.13.1.0.3",
            "libcublasLt.so.13",
            "libcublas.so.13",
        ] {
            std::fs::write(dir.path().join(name), b"")?;
        }
        assert_eq!(
            shortest_with_prefix(dir.path(), "libcublasLt.so."),
            Some(dir.path().join("libcublasLt.so.13"))
        );
        assert_eq!(
            shortest_with_prefix(dir.path(), "libnvrtc-builtins.so."),
            None
        );
        Ok(())
    }

    #[test]
    fn a_file_that_is_not_a_library_is_refused_with_the_loaders_reason() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let fake = dir.path().join("libnvrtc.so.13");
        std::fs::write(&fake, b"not an ELF file")?;
        let e = load_global(&fake).err().unwrap_or_default();
        assert!(e.contains("libnvrtc.so.13"), "{e:?}");
        Ok(())
    }
}
