//! The shapes of FHIR names and ids: a leaf module, so that tracing and the operations can both
//! check them without depending on each other.

/// Whether `name` can be a FHIR resource type name (`[A-Z][A-Za-z]*`, at most 64 characters).
///
/// This checks the shape only, not that the type exists in some FHIR version: servers add custom
/// types and versions add new ones.
pub fn is_valid_resource_type(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_alphabetic())
}

/// Whether `id` is a valid FHIR logical id or version id (`[A-Za-z0-9\-\.]{1,64}`).
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}
