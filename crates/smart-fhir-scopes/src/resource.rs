use std::fmt;
use std::str::FromStr;

use crate::error::{loggable_name, ScopeError, ScopeErrorKind};
use crate::permissions::{Permissions, V1Access};
use crate::restrictions::{encode_value, validate_param_name, Restrictions};

/// Whose data a resource scope reaches: `patient/`, `user/` or `system/` (SC-5.1).
///
/// Contexts never cover one another: `user/*.rs` grants nothing in `patient/` terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Context {
    /// `patient/`: the patient in context.
    Patient,
    /// `user/`: whatever the signed-in user may see.
    User,
    /// `system/`: whatever the client's policy allows (Backend Services).
    System,
}

impl Context {
    /// The scope prefix without `/`: `patient`, `user` or `system`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::User => "user",
            Self::System => "system",
        }
    }

    pub(crate) fn from_prefix(text: &str) -> Option<Self> {
        match text {
            "patient" => Some(Self::Patient),
            "user" => Some(Self::User),
            "system" => Some(Self::System),
            _ => None,
        }
    }
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Context {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_prefix(s).ok_or_else(|| {
            ScopeError::new(
                s,
                ScopeErrorKind::UnknownContext {
                    found: loggable_name(s),
                },
            )
        })
    }
}

/// A FHIR resource type name such as `Observation`: `[A-Z][A-Za-z]*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TypeName(String);

impl TypeName {
    /// Checks the name.
    pub fn new(name: impl Into<String>) -> Result<Self, ScopeError> {
        let name = name.into();
        Self::check(&name).map_err(|kind| ScopeError::new(&name, kind))?;
        Ok(Self(name))
    }

    fn check(name: &str) -> Result<(), ScopeErrorKind> {
        let mut chars = name.chars();
        match chars.next() {
            None => Err(ScopeErrorKind::MissingResourceType),
            Some(first) if first.is_ascii_uppercase() && chars.all(|c| c.is_ascii_alphabetic()) => {
                Ok(())
            }
            Some(_) => Err(ScopeErrorKind::InvalidResourceType {
                found: loggable_name(name),
            }),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TypeName {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl AsRef<str> for TypeName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The resource part of a resource scope: `*` or a type name.
///
/// Exhaustive by decision: the scope grammar allows nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// `*`: every resource type.
    Any,
    /// One resource type.
    Named(TypeName),
}

impl ResourceType {
    /// One resource type, checked.
    pub fn named(name: impl Into<String>) -> Result<Self, ScopeError> {
        TypeName::new(name).map(Self::Named)
    }

    /// Whether `self` includes every resource type `other` includes: `*` includes all, a name
    /// only itself.
    pub fn covers(&self, other: &ResourceType) -> bool {
        match (self, other) {
            (Self::Any, _) => true,
            (Self::Named(a), Self::Named(b)) => a == b,
            (Self::Named(_), Self::Any) => false,
        }
    }

    /// The type name, or `None` for `*`.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::Any => None,
            Self::Named(name) => Some(name.as_str()),
        }
    }

    fn parse_kind(text: &str) -> Result<Self, ScopeErrorKind> {
        if text == "*" {
            Ok(Self::Any)
        } else {
            TypeName::check(text)?;
            Ok(Self::Named(TypeName(text.to_owned())))
        }
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Named(name) => f.write_str(name.as_str()),
        }
    }
}

/// Parses `*` or a type name.
impl FromStr for ResourceType {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_kind(s).map_err(|kind| ScopeError::new(s, kind))
    }
}

/// A SMART v2 resource scope: `(patient|user|system)/(Type|*).[c][r][u][d][s][?restrictions]`
/// (SC-5.1).
///
/// Always has at least one permission (SC-5.3). `Display` writes the canonical form:
/// permissions in `cruds` order (SC-5.2), restrictions as written (SC-5.5).
///
/// ```
/// use smart_fhir_scopes::{Context, ResourceScope};
///
/// let labs = ResourceScope::patient("Observation")
///     .read()
///     .search()
///     .restrict("category", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory")
///     .build()?;
/// assert_eq!(
///     labs.to_string(),
///     "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
/// );
/// assert_eq!(labs.context(), Context::Patient);
/// # Ok::<(), smart_fhir_scopes::ScopeError>(())
/// ```
// Field order matters: the derived `Ord` is the documented canonical order of normalised sets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceScope {
    context: Context,
    resource: ResourceType,
    restrictions: Option<Restrictions>,
    permissions: Permissions,
}

impl ResourceScope {
    /// A scope without restrictions. Fails when `permissions` is empty (SC-5.3).
    pub fn new(
        context: Context,
        resource: ResourceType,
        permissions: Permissions,
    ) -> Result<Self, ScopeError> {
        if permissions.is_empty() {
            return Err(ScopeError::new(
                &format!("{context}/{resource}."),
                ScopeErrorKind::EmptyPermissions,
            ));
        }
        Ok(Self::from_parts(context, resource, permissions, None))
    }

    pub(crate) fn from_parts(
        context: Context,
        resource: ResourceType,
        permissions: Permissions,
        restrictions: Option<Restrictions>,
    ) -> Self {
        Self {
            context,
            resource,
            restrictions,
            permissions,
        }
    }

    /// The same scope, restricted by `restrictions` (replacing any it had).
    #[must_use]
    pub fn with_restrictions(mut self, restrictions: Restrictions) -> Self {
        self.restrictions = Some(restrictions);
        self
    }

    /// Starts building a scope in `context` on `resource` (`"*"` or a type name, checked by
    /// [`ResourceScopeBuilder::build`]).
    pub fn builder(context: Context, resource: impl Into<String>) -> ResourceScopeBuilder {
        ResourceScopeBuilder {
            context,
            resource: resource.into(),
            permissions: Permissions::EMPTY,
            restrictions: String::new(),
            error: None,
        }
    }

    /// Starts building a `patient/` scope.
    pub fn patient(resource: impl Into<String>) -> ResourceScopeBuilder {
        Self::builder(Context::Patient, resource)
    }

    /// Starts building a `user/` scope.
    pub fn user(resource: impl Into<String>) -> ResourceScopeBuilder {
        Self::builder(Context::User, resource)
    }

    /// Starts building a `system/` scope.
    pub fn system(resource: impl Into<String>) -> ResourceScopeBuilder {
        Self::builder(Context::System, resource)
    }

    /// The context.
    pub fn context(&self) -> Context {
        self.context
    }

    /// The resource type or `*`.
    pub fn resource(&self) -> &ResourceType {
        &self.resource
    }

    /// The permissions (never empty).
    pub fn permissions(&self) -> Permissions {
        self.permissions
    }

    /// The restrictions after `?`, if any.
    pub fn restrictions(&self) -> Option<&Restrictions> {
        self.restrictions.as_ref()
    }

    /// Whether this scope alone grants everything `other` asks for: same context, a resource
    /// type that includes `other`'s, at least its permissions, and either no restrictions or
    /// [equivalent](Restrictions::is_equivalent) ones (SC-5.16).
    pub fn covers(&self, other: &ResourceScope) -> bool {
        self.reaches(other) && self.permissions.contains(other.permissions)
    }

    /// Whether this scope's permissions apply to everything `other` is about (ignoring
    /// permissions). An unrestricted scope reaches restricted ones; a restricted one reaches
    /// only equivalently restricted ones; contexts never cross.
    pub(crate) fn reaches(&self, other: &ResourceScope) -> bool {
        self.context == other.context
            && self.resource.covers(&other.resource)
            && match (&self.restrictions, &other.restrictions) {
                (None, _) => true,
                (Some(mine), Some(theirs)) => mine.is_equivalent(theirs),
                (Some(_), None) => false,
            }
    }

    /// The v1 scope with exactly this meaning, for servers that advertise only
    /// `permission-v1` (SC-1.14): `rs` → `read`, `cud` → `write`, `cruds` → `*`. Fails for other
    /// permission sets and for restricted scopes, which v1 cannot express.
    pub fn to_v1(&self) -> Result<ResourceScopeV1, ScopeError> {
        let error = |reason| {
            ScopeError::new(
                &self.to_string(),
                ScopeErrorKind::NotRepresentableInV1 { reason },
            )
        };
        if self.restrictions.is_some() {
            return Err(error("v1 scopes have no `?` restrictions"));
        }
        let access = self.permissions.to_v1().ok_or_else(|| {
            error("only `rs`, `cud` and `cruds` map to v1 `read`, `write` and `*`")
        })?;
        Ok(ResourceScopeV1::new(
            self.context,
            self.resource.clone(),
            access,
        ))
    }

    /// Parses the text after `context/`.
    pub(crate) fn parse_after_context(
        context: Context,
        rest: &str,
        lenient: bool,
    ) -> Result<ParsedResource, ScopeErrorKind> {
        let (body, query) = match rest.split_once('?') {
            Some((body, query)) => (body, Some(query)),
            None => (rest, None),
        };
        let Some((type_text, suffix)) = body.split_once('.') else {
            return Err(if body.is_empty() {
                ScopeErrorKind::MissingResourceType
            } else {
                ScopeErrorKind::MissingPermissions
            });
        };
        let resource = ResourceType::parse_kind(type_text)?;
        if let Some(access) = V1Access::from_suffix(suffix) {
            if query.is_some() {
                return Err(ScopeErrorKind::V1WithRestrictions);
            }
            return Ok(ParsedResource::V1(ResourceScopeV1::new(
                context, resource, access,
            )));
        }
        let permissions = Permissions::parse_suffix(suffix, lenient)?;
        let restrictions = match query {
            Some(query) => {
                Restrictions::validate(query)?;
                Some(Restrictions::from_validated(query))
            }
            None => None,
        };
        Ok(ParsedResource::V2(Self::from_parts(
            context,
            resource,
            permissions,
            restrictions,
        )))
    }
}

pub(crate) enum ParsedResource {
    V2(ResourceScope),
    V1(ResourceScopeV1),
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}.{}", self.context, self.resource, self.permissions)?;
        if let Some(restrictions) = &self.restrictions {
            write!(f, "?{restrictions}")?;
        }
        Ok(())
    }
}

/// A SMART v1 resource scope: `(patient|user|system)/(Type|*).(read|write|*)` (SC-5.6).
///
/// Kept as v1 when parsed, so it is written back as v1; [`to_v2`](Self::to_v2) gives its v2
/// meaning (SC-5.7).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceScopeV1 {
    context: Context,
    resource: ResourceType,
    access: V1Access,
}

impl ResourceScopeV1 {
    /// A v1 scope.
    pub fn new(context: Context, resource: ResourceType, access: V1Access) -> Self {
        Self {
            context,
            resource,
            access,
        }
    }

    /// The context.
    pub fn context(&self) -> Context {
        self.context
    }

    /// The resource type or `*`.
    pub fn resource(&self) -> &ResourceType {
        &self.resource
    }

    /// `read`, `write` or `*`.
    pub fn access(&self) -> V1Access {
        self.access
    }

    /// The equivalent v2 scope: `read` → `rs`, `write` → `cud`, `*` → `cruds` (SC-5.7).
    pub fn to_v2(&self) -> ResourceScope {
        ResourceScope::from_parts(
            self.context,
            self.resource.clone(),
            self.access.permissions(),
            None,
        )
    }
}

impl fmt::Display for ResourceScopeV1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}.{}", self.context, self.resource, self.access)
    }
}

/// Builds a [`ResourceScope`] from parts; see [`ResourceScope::patient`].
///
/// Every problem (bad type name, bad parameter name, no permission) is reported by
/// [`build`](Self::build).
#[derive(Debug, Clone)]
#[must_use]
pub struct ResourceScopeBuilder {
    context: Context,
    resource: String,
    permissions: Permissions,
    /// Encoded `name=value` pairs joined by `&`, without `?`.
    restrictions: String,
    error: Option<ScopeError>,
}

impl ResourceScopeBuilder {
    /// Adds `c` (create).
    pub fn create(self) -> Self {
        self.permissions(Permissions::CREATE)
    }

    /// Adds `r` (read, vread, instance history).
    pub fn read(self) -> Self {
        self.permissions(Permissions::READ)
    }

    /// Adds `u` (update, patch).
    pub fn update(self) -> Self {
        self.permissions(Permissions::UPDATE)
    }

    /// Adds `d` (delete).
    pub fn delete(self) -> Self {
        self.permissions(Permissions::DELETE)
    }

    /// Adds `s` (search, type and system history).
    pub fn search(self) -> Self {
        self.permissions(Permissions::SEARCH)
    }

    /// Adds `permissions`.
    pub fn permissions(mut self, permissions: Permissions) -> Self {
        self.permissions |= permissions;
        self
    }

    /// Adds the restriction `name=value` (SC-5.1).
    ///
    /// `name` must be a search parameter name (letters, digits, `_`, `-`, `.`, `:`, which
    /// allows modifiers and chains); it is written as it is. `value` is the plain, decoded value
    /// and is percent-encoded: ASCII letters and digits and `-._~!$'()*,/:;?@|` stay as they
    /// are (so FHIR tokens such as `http://loinc.org|1234-5` read naturally), every other UTF-8
    /// byte, including `%`, `&`, `=`, `+`, `#` and space, becomes `%XX`. An empty value is an
    /// error. For text that is already encoded, use [`restrictions`](Self::restrictions).
    pub fn restrict(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        let (name, value) = (name.as_ref(), value.as_ref());
        if let Err(kind) = validate_param_name(name) {
            self.record(kind);
            return self;
        }
        if value.is_empty() {
            self.record(ScopeErrorKind::InvalidRestriction {
                parameter: Some(loggable_name(name)),
                problem: "empty value",
            });
            return self;
        }
        self.push_restriction(&format!("{name}={}", encode_value(value)));
        self
    }

    /// Adds already-parsed restrictions, written as they are.
    pub fn restrictions(mut self, restrictions: Restrictions) -> Self {
        self.push_restriction(restrictions.as_str());
        self
    }

    fn push_restriction(&mut self, text: &str) {
        if !self.restrictions.is_empty() {
            self.restrictions.push('&');
        }
        self.restrictions.push_str(text);
    }

    fn fail(&self, kind: ScopeErrorKind) -> ScopeError {
        let text = format!("{}/{}.{}", self.context, self.resource, self.permissions);
        ScopeError::new(&text, kind)
    }

    fn record(&mut self, kind: ScopeErrorKind) {
        if self.error.is_none() {
            self.error = Some(self.fail(kind));
        }
    }

    /// Checks everything and returns the scope.
    pub fn build(self) -> Result<ResourceScope, ScopeError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let resource = ResourceType::parse_kind(&self.resource).map_err(|kind| self.fail(kind))?;
        let restrictions = if self.restrictions.is_empty() {
            None
        } else {
            // Built from checked names and encoded values, so this cannot fail; checking keeps
            // the invariant local all the same.
            Restrictions::validate(&self.restrictions).map_err(|kind| self.fail(kind))?;
            Some(Restrictions::from_validated(&self.restrictions))
        };
        if self.permissions.is_empty() {
            return Err(self.fail(ScopeErrorKind::EmptyPermissions));
        }
        Ok(ResourceScope::from_parts(
            self.context,
            resource,
            self.permissions,
            restrictions,
        ))
    }
}

/// Builds a resource scope from a context, a resource type (`"*"` or a name) and permission
/// letters in `cruds` order.
///
/// ```
/// use smart_fhir_scopes::{resource_scope, Context};
///
/// let scope = resource_scope(Context::Patient, "Observation", "rs")?;
/// assert_eq!(scope.to_string(), "patient/Observation.rs");
/// assert!(resource_scope(Context::Patient, "observation", "rs").is_err());
/// # Ok::<(), smart_fhir_scopes::ScopeError>(())
/// ```
pub fn resource_scope(
    context: Context,
    resource: &str,
    permissions: &str,
) -> Result<ResourceScope, ScopeError> {
    let text = format!("{context}/{resource}.{permissions}");
    let error = |kind| ScopeError::new(&text, kind);
    let resource = ResourceType::parse_kind(resource).map_err(error)?;
    let permissions = Permissions::parse_suffix(permissions, false).map_err(error)?;
    Ok(ResourceScope::from_parts(
        context,
        resource,
        permissions,
        None,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_round_trip_and_typos() {
        for c in [Context::Patient, Context::User, Context::System] {
            assert_eq!(c.as_str().parse::<Context>(), Ok(c));
        }
        let e = "Patient".parse::<Context>().unwrap_err();
        assert_eq!(
            e.kind(),
            &ScopeErrorKind::UnknownContext {
                found: "Patient".into()
            }
        );
    }

    #[test]
    fn type_names_follow_fhir_syntax() {
        assert!(TypeName::new("Observation").is_ok());
        assert!(TypeName::new("A").is_ok());
        for bad in [
            "observation",
            "Observ4tion",
            "Obs-ervation",
            "Ob servation",
            "Øbs",
        ] {
            let e = TypeName::new(bad).unwrap_err();
            assert!(
                matches!(e.kind(), ScopeErrorKind::InvalidResourceType { .. }),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            TypeName::new("").unwrap_err().kind(),
            &ScopeErrorKind::MissingResourceType
        );
        assert_eq!("*".parse::<ResourceType>(), Ok(ResourceType::Any));
        assert_eq!(
            ResourceType::named("Patient").unwrap().name(),
            Some("Patient")
        );
    }

    #[test]
    fn wildcard_type_covers_names_but_not_the_reverse() {
        let obs = ResourceType::named("Observation").unwrap();
        let pat = ResourceType::named("Patient").unwrap();
        assert!(ResourceType::Any.covers(&obs));
        assert!(ResourceType::Any.covers(&ResourceType::Any));
        assert!(obs.covers(&obs));
        assert!(!obs.covers(&pat));
        assert!(!obs.covers(&ResourceType::Any));
    }

    #[test]
    fn sc_5_1_builder_and_function_agree() {
        let built = ResourceScope::patient("Observation")
            .search()
            .read()
            .build()
            .unwrap();
        let parsed = resource_scope(Context::Patient, "Observation", "rs").unwrap();
        assert_eq!(built, parsed);
        assert_eq!(built.to_string(), "patient/Observation.rs");
        let all = ResourceScope::system("*")
            .create()
            .read()
            .update()
            .delete()
            .search()
            .build()
            .unwrap();
        assert_eq!(all.to_string(), "system/*.cruds");
        assert_eq!(
            ResourceScope::user("Patient")
                .permissions(Permissions::WRITE)
                .build()
                .unwrap()
                .to_string(),
            "user/Patient.cud"
        );
    }

    #[test]
    fn sc_5_3_builder_refuses_no_permission() {
        let e = ResourceScope::patient("Observation").build().unwrap_err();
        assert_eq!(e.kind(), &ScopeErrorKind::EmptyPermissions);
        let e =
            ResourceScope::new(Context::User, ResourceType::Any, Permissions::EMPTY).unwrap_err();
        assert_eq!(e.kind(), &ScopeErrorKind::EmptyPermissions);
    }

    #[test]
    fn builder_checks_type_names_and_parameters() {
        let e = ResourceScope::patient("observation")
            .read()
            .build()
            .unwrap_err();
        assert!(matches!(
            e.kind(),
            ScopeErrorKind::InvalidResourceType { .. }
        ));
        let e = ResourceScope::patient("Observation")
            .read()
            .restrict("bad name", "x")
            .build()
            .unwrap_err();
        assert!(matches!(
            e.kind(),
            ScopeErrorKind::InvalidRestriction { .. }
        ));
        let e = ResourceScope::patient("Observation")
            .read()
            .restrict("category", "")
            .build()
            .unwrap_err();
        assert!(matches!(
            e.kind(),
            ScopeErrorKind::InvalidRestriction {
                problem: "empty value",
                ..
            }
        ));
        assert!(resource_scope(Context::Patient, "Observation", "sr").is_err());
        assert!(resource_scope(Context::Patient, "Observation", "").is_err());
    }

    #[test]
    fn sc_5_5_builder_encodes_values_and_keeps_them_parseable() {
        let scope = ResourceScope::patient("Observation")
            .read()
            .restrict("code", "http://loinc.org|1234-5")
            .restrict("note", "a&b=c d")
            .build()
            .unwrap();
        assert_eq!(
            scope.to_string(),
            "patient/Observation.r?code=http://loinc.org|1234-5&note=a%26b%3Dc%20d"
        );
        let restrictions = scope.restrictions().unwrap();
        assert_eq!(restrictions.decoded_params()[1].1, "a&b=c d");
        let raw = Restrictions::parse("category=laboratory").unwrap();
        let with_raw = ResourceScope::patient("Observation")
            .read()
            .restrictions(raw.clone())
            .build()
            .unwrap();
        assert_eq!(with_raw.restrictions(), Some(&raw));
    }

    #[test]
    fn sc_5_16_single_scope_coverage() {
        let rs = |s: &str| {
            let (ctx, rest) = s.split_once('/').unwrap();
            match ResourceScope::parse_after_context(
                Context::from_prefix(ctx).unwrap(),
                rest,
                false,
            )
            .unwrap()
            {
                ParsedResource::V2(scope) => scope,
                ParsedResource::V1(scope) => scope.to_v2(),
            }
        };
        assert!(rs("patient/*.rs").covers(&rs("patient/Observation.r")));
        assert!(!rs("patient/Observation.rs?category=x").covers(&rs("patient/Observation.rs")));
        assert!(rs("patient/Observation.rs").covers(&rs("patient/Observation.rs?category=x")));
        assert!(
            rs("patient/Observation.rs?category=x").covers(&rs("patient/Observation.r?category=x"))
        );
        assert!(!rs("user/*.rs").covers(&rs("patient/Observation.r")));
        assert!(!rs("system/*.cruds").covers(&rs("patient/Observation.r")));
        assert!(!rs("patient/Observation.r").covers(&rs("patient/Observation.rs")));
        assert!(rs("patient/*.read").covers(&rs("patient/Observation.rs")));
    }

    #[test]
    fn sc_5_7_v1_to_v2_and_back() {
        for (access, v2) in [
            (V1Access::Read, "rs"),
            (V1Access::Write, "cud"),
            (V1Access::All, "cruds"),
        ] {
            let v1 = ResourceScopeV1::new(Context::User, ResourceType::Any, access);
            let mapped = v1.to_v2();
            assert_eq!(mapped.to_string(), format!("user/*.{v2}"));
            assert_eq!(mapped.to_v1(), Ok(v1));
        }
        let e = resource_scope(Context::Patient, "Observation", "r")
            .unwrap()
            .to_v1()
            .unwrap_err();
        assert!(matches!(
            e.kind(),
            ScopeErrorKind::NotRepresentableInV1 { .. }
        ));
        let restricted = resource_scope(Context::Patient, "Observation", "rs")
            .unwrap()
            .with_restrictions(Restrictions::parse("category=x").unwrap());
        assert!(restricted.to_v1().is_err());
    }
}
