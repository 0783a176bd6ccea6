//! The checks each fuzz target runs, shared by the cargo-fuzz targets in `fuzz/` and the
//! regression test that replays `fixtures/fuzz/kbx-opts/<target>/*`.

/// Names of all targets, each a function below.
pub(crate) const TARGETS: &[&str] = &[
    "bool",
    "build_flags",
    "buildkitd_config",
    "buildkitd_flags",
    "driver_opts",
    "duration",
    "endpoint",
    "key_values",
    "kubernetes_options",
    "platforms",
    "quantity",
    "tolerations",
];

/// Runs the check of `target` on `text`.
pub(crate) fn run(target: &str, text: &str) {
    match target {
        "bool" => bool(text),
        "build_flags" => build_flags(text),
        "buildkitd_config" => buildkitd_config(text),
        "buildkitd_flags" => buildkitd_flags(text),
        "driver_opts" => driver_opts(text),
        "duration" => duration(text),
        "endpoint" => endpoint(text),
        "key_values" => key_values(text),
        "kubernetes_options" => kubernetes_options(text),
        "platforms" => platforms(text),
        "quantity" => quantity(text),
        "tolerations" => tolerations(text),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// Fuzz target `bool`.
pub(crate) fn bool(text: &str) {
    let _ = kbx_opts::parse_bool(text);
}

/// Fuzz target `build_flags`: every line goes through the `--output`, `--cache-*`,
/// `--secret`, `--ssh`, `--build-context`, `--add-host`, `--ulimit`, `--allow`, `--annotation`
/// and `--shm-size` parsers; a parsed entry displays as a record that
/// parses back to itself, and a refusal names the flag and the value.
pub(crate) fn build_flags(text: &str) {
    let names = |e: &kbx_opts::Error, flag: &str, line: &str| {
        e.to_string().starts_with(&format!("{flag} {line:?}: "))
    };
    for line in text.lines() {
        match kbx_opts::ExportEntry::parse(line) {
            Ok(e) => assert_eq!(kbx_opts::ExportEntry::parse(&e.to_string()), Ok(e)),
            Err(e) => assert!(names(&e, "--output", line), "{e}"),
        }
        match kbx_opts::CacheEntry::parse_list(line) {
            Ok(list) => {
                for e in list {
                    assert_eq!(kbx_opts::CacheEntry::parse(&e.to_string()), Ok(e));
                }
            }
            Err(e) => assert!(names(&e, "--cache-from/--cache-to", line), "{e}"),
        }
        match kbx_opts::SecretSpec::parse(line) {
            Ok(s) => assert_eq!(kbx_opts::SecretSpec::parse(&s.to_string()), Ok(s)),
            Err(e) => assert!(names(&e, "--secret", line), "{e}"),
        }
        match kbx_opts::BuildContext::parse(line) {
            Ok(c) => assert!(!c.name.is_empty(), "{line:?} gave an empty name"),
            Err(e) => assert!(names(&e, "--build-context", line), "{e}"),
        }
        let _ = kbx_opts::SshSpec::parse(line).to_string();
        if let Ok(hosts) = kbx_opts::ExtraHost::parse_flag(line) {
            for h in hosts {
                assert_eq!(kbx_opts::ExtraHost::parse(&h.to_string()), Ok(h));
            }
        }
        if let Ok(u) = kbx_opts::Ulimit::parse(line) {
            assert_eq!(kbx_opts::Ulimit::parse(&u.to_string()), Ok(u));
        }
        let _ = kbx_opts::Entitlement::parse_flag(line);
        let _ = kbx_opts::parse_annotation(line);
        let _ = kbx_opts::parse_mem_bytes("--shm-size", line);
    }
}

/// Fuzz target `buildkitd_config`.
pub(crate) fn buildkitd_config(text: &str) {
    if let Ok(config) = kbx_opts::BuildkitdConfig::parse(text) {
        let _ = config.registry_files();
        let _ = kbx_opts::buildkitd_args(None, Some(&config));
    }
}

/// Fuzz target `buildkitd_flags`.
pub(crate) fn buildkitd_flags(text: &str) {
    let _ = kbx_opts::buildkitd_args(Some(text), None);
}

/// Fuzz target `driver_opts`.
pub(crate) fn driver_opts(text: &str) {
    let records: Vec<&str> = text.split('\0').collect();
    if let Ok(opts) = kbx_opts::DriverOpts::parse(&records) {
        let again = kbx_opts::DriverOpts::parse([opts.to_string()]);
        assert!(
            opts.is_empty() || again.is_ok(),
            "display of parsed options must parse"
        );
    }
}

/// Fuzz target `duration`.
pub(crate) fn duration(text: &str) {
    if let Ok(d) = kbx_opts::GoDuration::parse(text) {
        assert_eq!(kbx_opts::GoDuration::parse(&d.to_string()).ok(), Some(d));
        let _ = kbx_opts::human_duration(d);
    }
}

/// Fuzz target `endpoint`.
pub(crate) fn endpoint(text: &str) {
    if let Ok(ep) = kbx_opts::KubernetesEndpoint::parse(text) {
        let _ = ep.to_string();
    }
}

/// Fuzz target `key_values`.
pub(crate) fn key_values(text: &str) {
    if let Ok(kv) = kbx_opts::KeyValues::parse(text) {
        let _ = kv.to_string();
    }
}

/// Fuzz target `kubernetes_options`.
pub(crate) fn kubernetes_options(text: &str) {
    let records: Vec<&str> = text.split('\0').collect();
    match kbx_opts::KubernetesOptions::parse(&records) {
        Ok(opts) => {
            let record = opts.to_string();
            if !record.is_empty() {
                let again = kbx_opts::KubernetesOptions::parse([record.as_str()]);
                assert_eq!(again.ok().as_ref(), Some(&opts), "round trip of {record:?}");
            }
        }
        Err(err) => {
            for problem in err.iter() {
                assert!(!problem.to_string().is_empty() || text.is_empty());
            }
        }
    }
}

/// Fuzz target `platforms`.
pub(crate) fn platforms(text: &str) {
    let local = kbx_opts::Platform::local();
    if let Ok(list) = kbx_opts::Platform::parse_list([text], &local) {
        for p in list {
            assert!(kbx_opts::Platform::parse(&p.to_string(), &local).is_ok());
        }
    }
}

/// Fuzz target `quantity`.
pub(crate) fn quantity(text: &str) {
    if let Ok(q) = kbx_opts::Quantity::parse(text) {
        let canonical = q.canonical();
        let again = kbx_opts::Quantity::parse(&canonical).expect("canonical form parses");
        assert_eq!(again.canonical(), canonical);
        let _ = q.serialized();
    }
}

/// Fuzz target `tolerations`.
pub(crate) fn tolerations(text: &str) {
    if let Ok(list) = kbx_opts::Toleration::parse_list(text) {
        for t in list {
            let _ = t.to_string();
        }
    }
}
