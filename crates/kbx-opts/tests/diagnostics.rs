//! Errors as miette diagnostics: the span points at the offending bytes of the record, and the
//! help says what was expected.

use kbx_opts::{DriverOpts, Error, KubernetesOptions};
use miette::Diagnostic;

/// The text under the error's first label.
fn labelled(e: &Error) -> (String, String) {
    let source = e.source_code().expect("a record to point into");
    let label = e.labels().expect("a label").next().expect("one label");
    let span = source
        .read_span(label.inner(), 0, 0)
        .expect("span inside the record");
    let text = String::from_utf8_lossy(span.data()).into_owned();
    let record = String::from_utf8_lossy(
        source
            .read_span(&(0..0).into(), usize::MAX, usize::MAX)
            .expect("whole record")
            .data(),
    )
    .into_owned();
    (record, text)
}

#[test]
fn value_errors_point_at_the_value() {
    let e = KubernetesOptions::parse(["namespace=a,replicas=three"]).unwrap_err();
    let (record, text) = labelled(&e);
    assert_eq!(record, "namespace=a,replicas=three");
    assert_eq!(text, "three");
    assert_eq!(e.key(), Some("replicas"));
    let help = e.help().expect("help").to_string();
    assert!(help.contains("replicas"), "{help}");
}

#[test]
fn list_errors_point_at_the_item() {
    let e = KubernetesOptions::parse([r#""nodeselector=a=b,c=d=e""#]).unwrap_err();
    let (_, text) = labelled(&e);
    assert_eq!(text, "c=d=e");
    let e = KubernetesOptions::parse([r#""tolerations=key=a;key,operator=Exists""#]).unwrap_err();
    let (_, text) = labelled(&e);
    assert_eq!(text, "key");
}

#[test]
fn unknown_options_point_at_the_key() {
    let e = KubernetesOptions::parse(["replicas=1,nmespace=x"]).unwrap_err();
    let (_, text) = labelled(&e);
    assert_eq!(text, "nmespace");
}

#[test]
fn csv_errors_point_at_the_column() {
    let e = DriverOpts::parse([r#"nodeselector="a=b,c=d""#]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "parse error on line 1, column 14: bare \" in non-quoted-field"
    );
    let (_, text) = labelled(&e);
    assert_eq!(text, "\"");
}

#[test]
fn several_errors_are_related_diagnostics() {
    let e = KubernetesOptions::parse(["replicas=x,timeout=5"]).unwrap_err();
    let related: Vec<String> = e
        .related()
        .expect("related")
        .map(|d| d.to_string())
        .collect();
    assert_eq!(related.len(), 2);
    assert!(related[1].contains("missing unit"), "{related:?}");
    // The report renders without panicking and mentions both problems.
    let report = format!("{:?}", miette::Report::new(e));
    assert!(
        report.contains("invalid syntax") && report.contains("missing unit"),
        "{report}"
    );
}
