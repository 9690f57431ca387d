//! Message templates: a channel's `content` whose strings are MiniJinja templates, rendered
//! with a message's `variables` into the content the message stores and sends.
//!
//! Rendering is strict and bounded, because templates are written by tenants and run in our
//! process: a variable that is not given is an error (never an empty string sent to a
//! customer), every render has a fuel limit (a template cannot loop for ever), and strings
//! repeat only up to MiniJinja's own size limit. HTML escaping applies to `html` bodies only:
//! the same variable lands escaped in `html` and as written in `text` or `subject`.
//!
//! Errors name the field as the API spells it ([`Fields`]): `content.subject` for a template
//! that does not compile or fails to render, `variables.name` for a variable the template uses
//! but the message did not give, `template` when a render runs out of fuel.

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde_json::{Map, Value};

use crate::domain::validate::FieldError;

/// Instructions one string's render may run. A sentence with a few variables takes tens; a
/// loop over a thousand items a few thousand. A tenant's endless loop stops here.
pub const FUEL: u64 = 50_000;

/// An environment as every template is rendered in: strict, fuelled, escaping `html` only.
fn engine() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    // each string is a template named by its field path: only the `html` body is escaped
    env.set_auto_escape_callback(
        |name| if name == "html" { AutoEscape::Html } else { AutoEscape::None },
    );
    env
}

/// The strings of `content` with their field paths (`subject`, `embeds.0.title`), in order.
fn strings<'a>(path: String, value: &'a Value, out: &mut Vec<(String, &'a str)>) {
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match value {
        Value::String(text) => out.push((path, text)),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                strings(join(&i.to_string()), item, out);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                strings(join(key), item, out);
            }
        }
        _ => {}
    }
}

/// A template's content compiled once, to be rendered by many messages: each string of the
/// content is a template of its own environment, named by its field path.
#[derive(Debug)]
pub struct Compiled {
    env: Environment<'static>,
    content: Value,
}

impl Compiled {
    /// Compiles every string of `content`; the errors name the strings that do not compile,
    /// under `field` (`content`).
    pub fn new(field: &str, content: &Value) -> Result<Compiled, Vec<FieldError>> {
        let mut env = engine();
        let mut sources = Vec::new();
        strings(String::new(), content, &mut sources);
        let mut errors = Vec::new();
        for (path, source) in sources {
            if let Err(e) = env.add_template_owned(path.clone(), source.to_owned()) {
                errors.push(FieldError::new(format!("{field}.{path}"), describe(&e)));
            }
        }
        if errors.is_empty() { Ok(Compiled { env, content: content.clone() }) } else { Err(errors) }
    }

    /// The content with each string rendered with `variables` (a JSON object).
    pub fn render(
        &self,
        fields: Fields<'_>,
        variables: &Map<String, Value>,
    ) -> Result<Value, Vec<FieldError>> {
        let context = minijinja::Value::from_serialize(variables);
        let mut errors = Vec::new();
        let rendered = self.render_value(
            String::new(),
            &self.content,
            &context,
            variables,
            fields,
            &mut errors,
        );
        if errors.is_empty() { Ok(rendered) } else { Err(errors) }
    }

    fn render_value(
        &self,
        path: String,
        value: &Value,
        context: &minijinja::Value,
        variables: &Map<String, Value>,
        fields: Fields<'_>,
        errors: &mut Vec<FieldError>,
    ) -> Value {
        let join =
            |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
        match value {
            Value::String(source) => {
                let rendered = self.env.get_template(&path).and_then(|t| t.render(context));
                match rendered {
                    Ok(text) => Value::String(text),
                    Err(e) => {
                        let at = format!("{}.{path}", fields.content);
                        errors.extend(render_error(&at, fields.variables, source, variables, &e));
                        Value::Null
                    }
                }
            }
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let at = join(&i.to_string());
                        self.render_value(at, item, context, variables, fields, errors)
                    })
                    .collect(),
            ),
            Value::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(key, item)| {
                        let rendered =
                            self.render_value(join(key), item, context, variables, fields, errors);
                        (key.clone(), rendered)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

/// Where errors point: the template's content and the variables, as the request names them
/// (`content` and `variables` for a preview, `template.content` and `template.variables` for
/// a send).
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    pub content: &'a str,
    pub variables: &'a str,
}

/// Checks that every string of `content` compiles; errors under `field` (`content`).
pub fn check_sources(field: &str, content: &Value) -> Vec<FieldError> {
    Compiled::new(field, content).err().unwrap_or_default()
}

/// `content` compiled and rendered with `variables`, once (a preview of a draft).
pub fn render(
    fields: Fields<'_>,
    content: &Value,
    variables: &Map<String, Value>,
) -> Result<Value, Vec<FieldError>> {
    Compiled::new(fields.content, content)?.render(fields, variables)
}

/// What a failed render of `source` (the template at `at`) tells the caller: the variables
/// it uses that were not given, else the engine's error at the template's field.
fn render_error(
    at: &str,
    variables_field: &str,
    source: &str,
    variables: &Map<String, Value>,
    error: &minijinja::Error,
) -> Vec<FieldError> {
    match error.kind() {
        ErrorKind::OutOfFuel => vec![FieldError::new(
            "template",
            format!("rendering {at} took more than {FUEL} steps (a loop too long?)"),
        )],
        ErrorKind::UndefinedError => {
            let env = engine();
            let mut missing: Vec<String> = env
                .template_from_str(source)
                .map(|t| t.undeclared_variables(false))
                .unwrap_or_default()
                .into_iter()
                .filter(|name| {
                    !variables.contains_key(name) && env.globals().all(|(g, _)| g != name)
                })
                .collect();
            missing.sort();
            if missing.is_empty() {
                vec![FieldError::new(at, describe(error))]
            } else {
                missing
                    .into_iter()
                    .map(|name| {
                        FieldError::new(
                            format!("{variables_field}.{name}"),
                            format!("is required: the template's {at} uses it"),
                        )
                    })
                    .collect()
            }
        }
        _ => vec![FieldError::new(at, describe(error))],
    }
}

/// The engine's error in one line: what went wrong and where.
fn describe(error: &minijinja::Error) -> String {
    let mut text = error.kind().to_string();
    if let Some(detail) = error.detail() {
        text.push_str(": ");
        text.push_str(detail);
    }
    if let Some(line) = error.line() {
        text.push_str(&format!(" (line {line})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const FIELDS: Fields = Fields { content: "content", variables: "variables" };

    fn vars(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn renders_escaping_html_only() {
        let content = json!({"subject": "Hi {{ name }}", "text": "{{ name }} & co",
                             "html": "<p>{{ name }}</p>", "cc": ["a@example.com"]});
        let rendered = render(FIELDS, &content, &vars(json!({"name": "<Bob>"}))).unwrap();
        assert_eq!(
            rendered,
            json!({"subject": "Hi <Bob>", "text": "<Bob> & co", "html": "<p>&lt;Bob&gt;</p>",
                   "cc": ["a@example.com"]})
        );
    }

    #[test]
    fn names_what_is_missing_and_stops_endless_loops() {
        let errors = render(
            FIELDS,
            &json!({"text": "{{ a }} {{ b.c }} {{ range(3) | length }}"}),
            &vars(json!({"a": 1})),
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "variables.b");
        // a nested attribute that is missing: the field, with the engine's words
        let errors =
            render(FIELDS, &json!({"text": "{{ user.name }}"}), &vars(json!({"user": {}})))
                .unwrap_err();
        assert_eq!(errors[0].field, "content.text");
        assert!(errors[0].message.contains("undefined"), "{errors:?}");
        let endless = json!({"text": "{% for i in range(10000) %}{% for j in range(10000) %}x{% endfor %}{% endfor %}"});
        let errors = render(FIELDS, &endless, &Map::new()).unwrap_err();
        assert_eq!(errors[0].field, "template");
        assert!(errors[0].message.contains("steps"), "{errors:?}");
        assert_eq!(
            check_sources("content", &json!({"embeds": [{"title": "{{ oops"}]}))[0].field,
            "content.embeds.0.title"
        );
        assert!(check_sources("content", &json!({"text": "{% if a %}yes{% endif %}"})).is_empty());
    }
}
