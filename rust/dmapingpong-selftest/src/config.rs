//! The self-test configuration, `/etc/dmapingpong/selftest.toml`.

use std::path::{Path, PathBuf};

use dmapingpong::Device;
use dmapingpong::pingpong::Mode;
use serde::{Deserialize, Deserializer};

/// Default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/dmapingpong/selftest.toml";

/// Self-test parameters. Every key is optional; unknown keys are errors.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Device node.
    pub device: PathBuf,
    /// Bytes per buffer.
    pub buffer_size: u64,
    /// Buffers per ping-pong session.
    pub buffers: u32,
    /// Ping-pong rounds per mode.
    pub rounds: u64,
    /// Ping-pong modes to run.
    #[serde(deserialize_with = "modes")]
    pub modes: Vec<Mode>,
    /// Bound of every wait, in milliseconds.
    pub timeout_ms: u64,
    /// Module unload check.
    pub module: ModuleConfig,
    /// Device-job scenarios.
    pub jobs: JobsConfig,
}

/// The `[jobs]` table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Rounds of `device_fill_copy` (two jobs on whole buffers of `buffer_size`
    /// bytes, rounded up to pages, each).
    pub rounds: u64,
    /// The driver's debugfs directory (engine counters, fault injection).
    pub debugfs: PathBuf,
    /// Whether to run the `engine_unbind` test (the exporter is unbound and
    /// bound again through sysfs).
    pub unbind_check: bool,
}

impl Default for JobsConfig {
    fn default() -> JobsConfig {
        JobsConfig {
            rounds: 16,
            debugfs: PathBuf::from(dmapingpong::stats::DEBUGFS_DIR),
            unbind_check: true,
        }
    }
}

/// The `[module]` table.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModuleConfig {
    /// Module name for `rmmod`/`modprobe`.
    pub name: String,
    /// Whether to run the `module_pinned` test.
    pub unload_check: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            device: PathBuf::from(Device::DEFAULT_PATH),
            buffer_size: 1 << 20,
            buffers: 4,
            rounds: 1000,
            modes: Mode::ALL.to_vec(),
            timeout_ms: 5000,
            module: ModuleConfig::default(),
            jobs: JobsConfig::default(),
        }
    }
}

impl Default for ModuleConfig {
    fn default() -> ModuleConfig {
        ModuleConfig {
            name: "dmapingpong".into(),
            unload_check: true,
        }
    }
}

fn modes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Mode>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .collect()
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, an unknown key or a value of the wrong type.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        source: toml::de::Error,
    },
    /// A value out of its range.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl Config {
    /// Reads `path`; a missing file yields the defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                log::info!("{} not found, using defaults", path.display());
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.into(),
                source,
            }),
        }
    }

    /// Parses and validates TOML text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        cfg.validate().map_err(|reason| ConfigError::Invalid {
            path: path.into(),
            reason,
        })?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), String> {
        if self.buffer_size == 0 {
            return Err("buffer_size must be at least 1".into());
        }
        if self.buffers == 0 || self.buffers as usize > dmapingpong::MAX_FDS {
            return Err(format!("buffers must be 1..={}", dmapingpong::MAX_FDS));
        }
        if self.rounds == 0 {
            return Err("rounds must be at least 1".into());
        }
        if self.jobs.rounds == 0 {
            return Err("jobs.rounds must be at least 1".into());
        }
        if self.timeout_ms == 0 {
            return Err("timeout_ms must be at least 1".into());
        }
        if self.modes.is_empty() {
            return Err("modes must not be empty".into());
        }
        if self
            .modes
            .iter()
            .enumerate()
            .any(|(i, m)| self.modes[..i].contains(m))
        {
            return Err("modes must not repeat".into());
        }
        if self.module.name.is_empty() || self.module.name.contains(['/', ' ']) {
            return Err(format!("invalid module name {:?}", self.module.name));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.device, Path::new("/dev/dmapingpong"));
        assert_eq!(
            (c.buffer_size, c.buffers, c.rounds, c.timeout_ms),
            (1 << 20, 4, 1000, 5000)
        );
        assert_eq!(c.modes, [Mode::Explicit, Mode::Implicit]);
        assert_eq!(
            c.module,
            ModuleConfig {
                name: "dmapingpong".into(),
                unload_check: true
            }
        );
    }

    #[test]
    fn installed_config_equals_defaults() {
        let c = Config::parse(
            include_str!("../../../configs/selftest.toml"),
            Path::new("configs/selftest.toml"),
        );
        assert_eq!(c.unwrap(), Config::default());
    }

    #[test]
    fn overrides() {
        let c = parse(
            "device = \"/dev/x\"\nbuffer_size = 4097\nbuffers = 2\nrounds = 3\nmodes = [\"implicit\"]\ntimeout_ms = 10\n[module]\nunload_check = false\n",
        )
        .unwrap();
        assert_eq!(c.device, Path::new("/dev/x"));
        assert_eq!(
            (c.buffer_size, c.buffers, c.rounds, c.timeout_ms),
            (4097, 2, 3, 10)
        );
        assert_eq!(c.modes, [Mode::Implicit]);
        assert_eq!(
            c.module,
            ModuleConfig {
                name: "dmapingpong".into(),
                unload_check: false
            }
        );
    }

    #[test]
    fn jobs_table() {
        let c = parse("[jobs]\nrounds = 2\nunbind_check = false\n").unwrap();
        assert_eq!((c.jobs.rounds, c.jobs.unbind_check), (2, false));
        assert!(Config::default().jobs.unbind_check);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = parse("rounds = 1\nround = 2\n").unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }), "{e}");
        assert!(e.to_string().contains("round"), "{e}");
        assert!(matches!(
            parse("[module]\nunload = true\n"),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn bad_values_are_errors() {
        for bad in [
            "rounds = -1",
            "rounds = \"many\"",
            "modes = [\"fast\"]",
            "buffers = 1.5",
        ] {
            assert!(
                matches!(parse(bad), Err(ConfigError::Parse { .. })),
                "{bad}"
            );
        }
        for bad in [
            "rounds = 0",
            "buffer_size = 0",
            "buffers = 0",
            "buffers = 65",
            "timeout_ms = 0",
            "modes = []",
            "modes = [\"explicit\", \"explicit\"]",
            "[module]\nname = \"\"",
        ] {
            assert!(
                matches!(parse(bad), Err(ConfigError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn missing_file_gives_defaults() {
        assert_eq!(
            Config::load(Path::new("/nonexistent/selftest.toml")).unwrap(),
            Config::default()
        );
    }
}
