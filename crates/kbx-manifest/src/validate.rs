//! Local validation: what the API server would reject, found before any API call.

use kbx_opts::{Quantity, Toleration};

use crate::error::{Error, Problem, QuantityProblem, TolerationProblem};
use crate::render::{
    APP_LABEL, APPARMOR_ANNOTATION, Node, PLATFORM_ANNOTATION, ROOTLESS_STATE_DIR, STATE_DIR,
};
use crate::syntax;

/// Longest StatefulSet name: its pods carry the label
/// `controller-revision-hash: <name>-<10-character hash>`, which must fit in 63 characters.
pub(crate) const MAX_STATEFULSET_NAME: usize = 52;
/// The API server's limit on the total size of an object's annotations.
pub(crate) const MAX_ANNOTATIONS_SIZE: usize = 256 * 1024;
/// The API server's limit on a ConfigMap's data.
pub(crate) const MAX_CONFIG_MAP_SIZE: usize = 1024 * 1024;

/// One of the syntax checks of [`syntax`].
type SyntaxCheck = fn(&str) -> Result<(), Problem>;

/// Every problem of `node`, in a fixed order: names, metadata, pod spec, resources, files.
pub(crate) fn check(node: &Node) -> Result<(), Error> {
    let mut errors = Vec::new();
    names(node, &mut errors);
    metadata(node, &mut errors);
    pod(node, &mut errors);
    resources(node, &mut errors);
    files(node, &mut errors);
    Error::from_list(errors).map_or(Ok(()), Err)
}

fn names(node: &Node, errors: &mut Vec<Error>) {
    let o = &node.options;
    let name = node.workload_name();
    let stateful = o.persistent_volume_claim_storage.is_some();
    let (what, max, syntax_check): (_, _, SyntaxCheck) = if stateful {
        ("StatefulSet", MAX_STATEFULSET_NAME, syntax::dns1123_label)
    } else {
        ("Deployment", syntax::MAX_LABEL, syntax::dns1123_subdomain)
    };
    let result = if name.len() > max {
        Err(Problem::TooLong { max })
    } else {
        syntax_check(&name)
    };
    match result {
        Err(problem) => errors.push(Error::Name {
            what,
            name: name.clone(),
            problem,
        }),
        Ok(()) => {
            for group in node.files.groups() {
                let cm = format!("{name}-{}", group.name);
                if let Err(problem) = syntax::dns1123_subdomain(&cm) {
                    errors.push(Error::Name {
                        what: "ConfigMap",
                        name: cm,
                        problem,
                    });
                }
            }
        }
    }
    let optional_names: [(&'static str, Option<&String>, SyntaxCheck); 3] = [
        ("namespace", o.namespace.as_ref(), syntax::dns1123_label),
        (
            "service account",
            o.service_account.as_ref(),
            syntax::dns1123_subdomain,
        ),
        (
            "scheduler",
            o.scheduler_name.as_ref(),
            syntax::dns1123_subdomain,
        ),
    ];
    for (what, value, check) in optional_names {
        if let Some(v) = value
            && let Err(problem) = check(v)
        {
            errors.push(Error::Name {
                what,
                name: v.clone(),
                problem,
            });
        }
    }
}

fn metadata(node: &Node, errors: &mut Vec<Error>) {
    let o = &node.options;
    for (key, value) in o.labels.iter() {
        if key == APP_LABEL {
            errors.push(Error::ReservedLabel {
                key: key.to_owned(),
            });
            continue;
        }
        key_value(errors, "label", key, Some(value));
    }
    let mut size = 0;
    for (key, value) in o.annotations.iter() {
        size += key.len() + value.len();
        if key == PLATFORM_ANNOTATION {
            errors.push(Error::ReservedAnnotation {
                key: key.to_owned(),
            });
            continue;
        }
        key_value(errors, "annotation", key, None);
    }
    if !node.platforms.is_empty() {
        size += PLATFORM_ANNOTATION.len() + crate::render::platforms_value(&node.platforms).len();
    }
    if o.rootless {
        size += APPARMOR_ANNOTATION.len() + "unconfined".len();
    }
    if size > MAX_ANNOTATIONS_SIZE {
        errors.push(Error::AnnotationsTooLarge {
            size,
            limit: MAX_ANNOTATIONS_SIZE,
        });
    }
    for (key, value) in o.node_selector.iter() {
        key_value(errors, "node selector", key, Some(value));
    }
}

/// Checks a qualified-name key and, for labels, the value.
fn key_value(errors: &mut Vec<Error>, what: &'static str, key: &str, value: Option<&str>) {
    if let Err(problem) = syntax::qualified_name(key) {
        errors.push(Error::Key {
            what,
            key: key.to_owned(),
            problem,
        });
    }
    if let Some(value) = value
        && let Err(problem) = syntax::label_value(value)
    {
        errors.push(Error::Value {
            what,
            key: key.to_owned(),
            value: value.to_owned(),
            problem,
        });
    }
}

fn pod(node: &Node, errors: &mut Vec<Error>) {
    let o = &node.options;
    if o.replicas < 0 {
        errors.push(Error::Replicas { value: o.replicas });
    }
    let images = [
        ("image", Some(&o.image)),
        ("qemu.image", o.qemu_install.then_some(&o.qemu_image)),
    ];
    for (what, image) in images {
        if let Some(image) = image
            && (image.is_empty() || image.trim() != image)
        {
            errors.push(Error::Image {
                what,
                image: image.clone(),
            });
        }
    }
    for env in &o.env {
        let printable = env.name.bytes().all(|c| (b' '..=b'~').contains(&c));
        if env.name.is_empty() || !printable || env.name.contains('=') {
            errors.push(Error::EnvName {
                name: env.name.clone(),
            });
        }
    }
    for (i, t) in o.tolerations.iter().enumerate() {
        if let Some(problem) = toleration(t) {
            errors.push(Error::Toleration {
                index: i + 1,
                toleration: t.to_string(),
                problem,
            });
        }
    }
}

/// The first rule of the API server's toleration validation that `t` breaks.
fn toleration(t: &Toleration) -> Option<TolerationProblem> {
    if !t.key.is_empty()
        && let Err(p) = syntax::qualified_name(&t.key)
    {
        return Some(TolerationProblem::Key(p));
    }
    match t.operator.as_str() {
        "" | "Equal" => {
            if t.key.is_empty() {
                return Some(TolerationProblem::EmptyKeyNeedsExists);
            }
            if let Err(p) = syntax::label_value(&t.value) {
                return Some(TolerationProblem::Value(p));
            }
        }
        "Exists" => {
            if !t.value.is_empty() {
                return Some(TolerationProblem::ValueWithExists);
            }
        }
        other => {
            return Some(TolerationProblem::Operator {
                operator: other.to_owned(),
            });
        }
    }
    if !matches!(
        t.effect.as_str(),
        "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute"
    ) {
        return Some(TolerationProblem::Effect {
            effect: t.effect.clone(),
        });
    }
    if t.toleration_seconds.is_some() && t.effect != "NoExecute" {
        return Some(TolerationProblem::SecondsWithoutNoExecute);
    }
    None
}

fn resources(node: &Node, errors: &mut Vec<Error>) {
    let o = &node.options;
    let pairs: [(
        &'static str,
        &Option<Quantity>,
        &'static str,
        &Option<Quantity>,
    ); 3] = [
        ("requests.cpu", &o.requests.cpu, "limits.cpu", &o.limits.cpu),
        (
            "requests.memory",
            &o.requests.memory,
            "limits.memory",
            &o.limits.memory,
        ),
        (
            "requests.ephemeral-storage",
            &o.requests.ephemeral_storage,
            "limits.ephemeral-storage",
            &o.limits.ephemeral_storage,
        ),
    ];
    let quantity_error = |option, q: &Quantity, problem| Error::Quantity {
        option,
        value: q.as_str().to_owned(),
        problem,
    };
    for (req_option, request, _, _) in &pairs {
        if let Some(q) = request
            && q.is_negative()
        {
            errors.push(quantity_error(*req_option, q, QuantityProblem::Negative));
        }
    }
    for (_, _, lim_option, limit) in &pairs {
        if let Some(q) = limit
            && q.is_negative()
        {
            errors.push(quantity_error(*lim_option, q, QuantityProblem::Negative));
        }
    }
    for (req_option, request, lim_option, limit) in &pairs {
        if let (Some(req), Some(lim)) = (request, limit)
            && !req.is_negative()
            && !lim.is_negative()
            && matches!((req.as_nanos(), lim.as_nanos()), (Some(r), Some(l)) if r > l)
        {
            errors.push(quantity_error(
                *req_option,
                req,
                QuantityProblem::AboveLimit {
                    limit_option: lim_option,
                    limit: lim.as_str().to_owned(),
                },
            ));
        }
    }
    let sizes = [
        (
            "buildkit-root-volume-memory",
            &o.buildkit_root_volume_memory,
        ),
        (
            "persistent-volume-claim.requests.storage",
            &o.persistent_volume_claim_storage,
        ),
    ];
    for (option, q) in sizes {
        if let Some(q) = q
            && (q.is_negative() || q.is_zero())
        {
            errors.push(quantity_error(option, q, QuantityProblem::NotPositive));
        }
    }
    if o.buildkit_root_volume_memory.is_some() && o.persistent_volume_claim_storage.is_some() {
        errors.push(Error::MemoryWithClaim {
            path: if o.rootless {
                ROOTLESS_STATE_DIR
            } else {
                STATE_DIR
            },
        });
    }
}

fn files(node: &Node, errors: &mut Vec<Error>) {
    node.files.validate(errors);
    let name = node.workload_name();
    for group in node.files.groups() {
        let size: usize = group.files.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_CONFIG_MAP_SIZE {
            errors.push(Error::ConfigMapTooLarge {
                name: format!("{name}-{}", group.name),
                size,
                limit: MAX_CONFIG_MAP_SIZE,
            });
        }
    }
}
