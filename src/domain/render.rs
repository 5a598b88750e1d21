//! Rendering of the text files abssctl generates, with tera 2 (which refuses undefined
//! variables, so a template/code mismatch is an error instead of an empty value).
//!
//! Templates are embedded in the binary at build time; an operator copy with the same
//! name in `templates_dir` wins. Reading that copy is I/O and happens in `ops`; this module
//! only turns (template text, context) into text.

use crate::error::Failure;
use std::path::Path;

/// The per-instance systemd drop-in.
pub const INSTANCE_DROPIN: &str = "instance-dropin.conf.tera";

/// Every embedded template by file name.
const EMBEDDED: &[(&str, &str)] = &[
    (
        INSTANCE_DROPIN,
        include_str!("../../templates/instance-dropin.conf.tera"),
    ),
    (
        crate::domain::vhost::TEMPLATE_NAME,
        crate::domain::vhost::EMBEDDED_TEMPLATE,
    ),
    (
        crate::domain::default_server::TEMPLATE_NAME,
        crate::domain::default_server::EMBEDDED_TEMPLATE,
    ),
];

/// The built-in text of a template.
pub fn embedded(name: &str) -> Option<&'static str> {
    EMBEDDED.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Render `name` from the operator's override (`Some((path, text))`) or the embedded copy.
/// A template that does not parse or render is a validation error naming the file; for
/// the embedded copy that is a bug in abssctl, and the hint says so.
pub fn render(
    name: &str,
    override_text: Option<(&Path, &str)>,
    ctx: &tera::Context,
) -> Result<String, Failure> {
    let (text, source, hint) = match override_text {
        Some((path, text)) => (
            text,
            path.display().to_string(),
            format!(
                "fix {} or remove it to use the built-in template",
                path.display()
            ),
        ),
        None => (
            embedded(name).ok_or_else(|| {
                Failure::validation(format!("internal: no embedded template {name}"))
            })?,
            format!("the built-in {name}"),
            "this is a bug in abssctl; please report it".to_string(),
        ),
    };
    let bad = |e: tera::Error| {
        let mut msg = e.to_string();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            src = s.source();
        }
        Failure::validation(format!(
            "template {source} does not render: {}",
            msg.replace('\n', " ")
        ))
        .hint(hint.clone())
    };
    let mut tera = tera::Tera::new();
    tera.autoescape_on(Vec::<&str>::new());
    tera.add_raw_template(name, text).map_err(bad)?;
    tera.render(name, ctx).map_err(bad)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test reports a wrong result
mod tests {
    use super::*;

    #[test]
    fn override_wins_and_undefined_variables_are_errors() {
        let mut ctx = tera::Context::new();
        ctx.insert("x", "1");
        let out = render("t", Some((Path::new("/etc/t"), "x={{ x }}\n")), &ctx).unwrap();
        assert_eq!(out, "x=1\n");
        let err = render("t", Some((Path::new("/etc/t"), "{{ y }}")), &ctx).unwrap_err();
        assert!(err.message.contains("/etc/t"), "{}", err.message);
        assert!(err.hint.unwrap().contains("remove it"));
        assert!(render("nope", None, &ctx).is_err());
    }
}
