use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use crate::error::ScopeError;
use crate::launch::LaunchScope;
use crate::permissions::Permissions;
use crate::resource::{Context, ResourceScope, ResourceScopeBuilder, ResourceType};
use crate::restrictions::RestrictionKey;
use crate::scope::{ExtensionScope, Scope};

/// An ordered set of scopes: insertion order, no duplicates (SC-5.8, SC-5.13).
///
/// `Display` joins the scopes with single spaces, ready for a `scope` parameter. `==` compares
/// the members, ignoring order; [`covers`](Self::covers) compares meaning.
///
/// ```
/// use smart_fhir_scopes::{Scope, ScopeSet};
///
/// let granted = ScopeSet::parse("launch/patient patient/Observation.r patient/Observation.s openid")?;
/// let wanted: Scope = "patient/Observation.rs".parse()?;
/// assert!(granted.covers(&wanted));
/// assert!(granted.has_openid());
/// assert_eq!(granted.normalize().to_string(), "openid launch/patient patient/Observation.rs");
/// # Ok::<(), smart_fhir_scopes::ScopeError>(())
/// ```
#[derive(Clone, Default)]
pub struct ScopeSet {
    order: Vec<Scope>,
    members: HashSet<Scope>,
}

impl ScopeSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts building a set; see [`ScopeSetBuilder`].
    pub fn builder() -> ScopeSetBuilder {
        ScopeSetBuilder::default()
    }

    /// Parses a space-separated scope string strictly (see [`Scope::parse`]). Runs of spaces
    /// and leading or trailing spaces are tolerated; other whitespace is an invalid character.
    /// An empty or all-space string is the empty set. Fails on the first bad scope.
    pub fn parse(text: &str) -> Result<Self, ScopeError> {
        text.split(' ')
            .filter(|token| !token.is_empty())
            .map(Scope::parse)
            .collect()
    }

    /// Parses a scope string from a server, never failing (SC-5.13): tokens are split on any
    /// ASCII whitespace and read with [`Scope::parse_lenient`]; tokens that still do not parse
    /// are kept apart in [`LenientScopeSet::unrecognized`], so a granted set always loads.
    pub fn parse_lenient(text: &str) -> LenientScopeSet {
        let mut scopes = ScopeSet::new();
        let mut unrecognized: Vec<UnrecognizedScope> = Vec::new();
        let mut seen: HashSet<&str> = HashSet::new();
        for token in text.split_ascii_whitespace() {
            match Scope::parse_lenient(token) {
                Ok(scope) => {
                    scopes.insert(scope);
                }
                Err(error) => {
                    if seen.insert(token) {
                        unrecognized.push(UnrecognizedScope {
                            text: token.to_owned(),
                            error,
                        });
                    }
                }
            }
        }
        LenientScopeSet {
            scopes,
            unrecognized,
        }
    }

    /// Adds `scope` at the end; returns `false` (and changes nothing) if it is already present.
    pub fn insert(&mut self, scope: Scope) -> bool {
        if self.members.contains(&scope) {
            return false;
        }
        self.members.insert(scope.clone());
        self.order.push(scope);
        true
    }

    /// Removes `scope`; returns whether it was present.
    pub fn remove(&mut self, scope: &Scope) -> bool {
        if !self.members.remove(scope) {
            return false;
        }
        self.order.retain(|s| s != scope);
        true
    }

    /// Whether exactly this scope is a member (no coverage reasoning: see
    /// [`covers`](Self::covers)).
    pub fn contains(&self, scope: &Scope) -> bool {
        self.members.contains(scope)
    }

    /// The scopes in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Scope> {
        self.order.iter()
    }

    /// How many scopes.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Whether `openid` is present.
    pub fn has_openid(&self) -> bool {
        self.contains(&Scope::OpenId)
    }

    /// Whether `fhirUser` or its v1 alias `profile` is present.
    pub fn has_fhir_user(&self) -> bool {
        self.contains(&Scope::FhirUser) || self.contains(&Scope::Profile)
    }

    /// Whether `offline_access` is present.
    pub fn has_offline_access(&self) -> bool {
        self.contains(&Scope::OfflineAccess)
    }

    /// Whether `online_access` is present.
    pub fn has_online_access(&self) -> bool {
        self.contains(&Scope::OnlineAccess)
    }

    /// The launch scopes, in order.
    pub fn launch_scopes(&self) -> impl Iterator<Item = &LaunchScope> {
        self.order.iter().filter_map(|scope| match scope {
            Scope::Launch(launch) => Some(launch),
            _ => None,
        })
    }

    /// The permissions granted without restriction on `resource` (a type name, or `"*"` for
    /// permissions on every type) in `context`, from all scopes together: `patient/*.r` and
    /// `patient/Observation.s` give `rs` on `Observation`. Restricted scopes do not count,
    /// since they grant only part of the type. Use it to enable features from a grant
    /// (SC-5.13).
    pub fn permissions_for(&self, context: Context, resource: &str) -> Permissions {
        self.order
            .iter()
            .filter_map(Scope::resource_view)
            .filter(|scope| {
                scope.context() == context
                    && scope.restrictions().is_none()
                    && match scope.resource() {
                        ResourceType::Any => true,
                        ResourceType::Named(name) => name.as_str() == resource,
                    }
            })
            .fold(Permissions::EMPTY, |acc, scope| acc | scope.permissions())
    }

    /// Whether the scopes together grant everything `target` (a [`Scope`], [`ResourceScope`]
    /// or [`ScopeSet`]) asks for (SC-5.8, SC-5.16).
    ///
    /// * A resource scope is covered when the union of the permissions of the granted resource
    ///   scopes that reach it contains its permissions. A granted scope reaches a requested one
    ///   when the contexts are equal (they never cross), its type is `*` or the same type, and it
    ///   is unrestricted or [equivalently](crate::Restrictions::is_equivalent) restricted. So
    ///   `patient/*.rs` covers `patient/Observation.r`, `patient/Observation.r` +
    ///   `patient/Observation.s` cover `patient/Observation.rs`,
    ///   `patient/Observation.rs` covers `patient/Observation.rs?category=x`, but
    ///   `patient/Observation.rs?category=x` does not cover `patient/Observation.rs`. v1 scopes
    ///   count with their v2 meaning.
    /// * Other scopes are covered only by themselves, except that `fhirUser` and `profile`
    ///   cover each other. `launch` does not cover `launch/patient`.
    ///
    /// Coverage is reflexive and transitive; the empty set is covered by every set.
    pub fn covers<T: Coverable + ?Sized>(&self, target: &T) -> bool {
        target.is_covered_by(self)
    }

    /// What of `scope` these scopes do not grant: `None` when covered, the scope itself when
    /// nothing of it is granted, or a v2 scope with the missing permissions when a resource scope
    /// is partly granted.
    fn missing_part(&self, scope: &Scope) -> Option<Scope> {
        CoverageIndex::new(self).missing_part(scope)
    }

    /// The parts of `self` that `other` does not cover, in `self`'s order.
    fn not_covered_by(&self, other: &ScopeSet) -> ScopeSet {
        let index = CoverageIndex::new(other);
        self.order
            .iter()
            .filter_map(|scope| index.missing_part(scope))
            .collect()
    }

    /// Compares what was requested (`self`) with what was `granted` (SC-5.13): which requested
    /// scopes or permissions are missing, and which granted ones go beyond the request.
    ///
    /// ```
    /// use smart_fhir_scopes::{ScopeRelation, ScopeSet};
    ///
    /// let requested = ScopeSet::parse("patient/Observation.crs launch/patient")?;
    /// let granted = ScopeSet::parse("patient/Observation.rs patient/Patient.r")?;
    /// let diff = requested.difference(&granted);
    /// assert_eq!(diff.missing().to_string(), "patient/Observation.c launch/patient");
    /// assert_eq!(diff.extra().to_string(), "patient/Patient.r");
    /// assert_eq!(diff.relation(), ScopeRelation::Different);
    /// # Ok::<(), smart_fhir_scopes::ScopeError>(())
    /// ```
    pub fn difference(&self, granted: &ScopeSet) -> ScopeDiff {
        ScopeDiff {
            missing: self.not_covered_by(granted),
            extra: granted.not_covered_by(self),
        }
    }

    /// The same scopes with v1 resource scopes mapped to v2 (SC-5.7), order kept.
    pub fn to_v2(&self) -> ScopeSet {
        self.order.iter().map(Scope::to_v2).collect()
    }

    /// The shortest equivalent set, in canonical order (SC-5.8):
    ///
    /// 1. v1 resource scopes are mapped to v2;
    /// 2. resource scopes on the same context, type and equivalent restrictions are merged into
    ///    one (`X.r X.s` → `X.rs`), keeping the first restriction text;
    /// 3. permissions that a broader scope already grants are dropped (`patient/*.rs
    ///    patient/Observation.crs` → `patient/*.rs patient/Observation.c`), and a scope left with
    ///    none is removed;
    /// 4. the result is sorted: `openid`, `fhirUser`, `profile`, launch scopes (`launch` first,
    ///    then by type and role), `offline_access`, `online_access`, resource scopes (by context
    ///    `patient`, `user`, `system`; then `*` before type names in byte order; then
    ///    unrestricted before restricted, by restriction text), extension scopes by text.
    ///
    /// The result covers `self` and is covered by it; normalising twice changes nothing.
    /// `profile` is not rewritten to `fhirUser`, since OpenID Connect gives it its own meaning.
    pub fn normalize(&self) -> ScopeSet {
        let (mut out, groups) = self.merge_resource_scopes();
        let index: HashMap<&GroupKey, Permissions> = groups
            .iter()
            .map(|(key, group)| (key, group.permissions()))
            .collect();
        for (key, group) in &groups {
            // The scopes that reach this one are exactly those on the same context with `*` or
            // the same type, unrestricted or equivalently restricted; after merging, each of
            // those is a single group, found by its key.
            let (context, resource, restrictions) = key;
            let mut broader_keys = vec![
                (*context, ResourceType::Any, None),
                (*context, resource.clone(), None),
            ];
            if restrictions.is_some() {
                broader_keys.push((*context, ResourceType::Any, restrictions.clone()));
            }
            let broader = broader_keys
                .iter()
                .filter(|candidate| *candidate != key)
                .filter_map(|candidate| index.get(candidate))
                .fold(Permissions::EMPTY, |acc, p| acc | *p);
            let kept = group.permissions().difference(broader);
            if !kept.is_empty() {
                out.push(Scope::Resource(ResourceScope::from_parts(
                    group.context(),
                    group.resource().clone(),
                    kept,
                    group.restrictions().cloned(),
                )));
            }
        }
        out.sort();
        out.into_iter().collect()
    }

    /// Splits into the non-resource scopes (in order) and the resource scopes merged by
    /// (context, type, equivalent restrictions), in order of first appearance.
    fn merge_resource_scopes(&self) -> (Vec<Scope>, Vec<(GroupKey, ResourceScope)>) {
        let mut others = Vec::new();
        let mut groups: Vec<(GroupKey, ResourceScope)> = Vec::new();
        let mut index: HashMap<GroupKey, usize> = HashMap::new();
        for scope in &self.order {
            let Some(view) = scope.resource_view() else {
                others.push(scope.clone());
                continue;
            };
            let key = (
                view.context(),
                view.resource().clone(),
                view.restrictions().map(|r| r.key()),
            );
            match index.get(&key).and_then(|&i| groups.get_mut(i)) {
                Some((_, group)) => {
                    *group = ResourceScope::from_parts(
                        group.context(),
                        group.resource().clone(),
                        group.permissions() | view.permissions(),
                        group.restrictions().cloned(),
                    );
                }
                None => {
                    index.insert(key.clone(), groups.len());
                    groups.push((key, view.into_owned()));
                }
            }
        }
        (others, groups)
    }

    /// The same grants in SMART v1 syntax, for servers that advertise only `permission-v1`
    /// (SC-1.14). Resource scopes on the same context, type and restrictions are merged first
    /// (so `X.r X.s` becomes `X.read`); each must then be exactly `rs` (`read`), `cud`
    /// (`write`) or `cruds` (`*`) and unrestricted. Anything else fails with
    /// [`ScopeErrorKind::NotRepresentableInV1`](crate::ScopeErrorKind::NotRepresentableInV1) rather than asking for more or less than meant.
    /// Other scopes are kept; order follows first appearance, non-resource scopes first.
    pub fn to_v1(&self) -> Result<ScopeSet, ScopeError> {
        let (mut out, groups) = self.merge_resource_scopes();
        for (_, group) in groups {
            out.push(Scope::ResourceV1(group.to_v1()?));
        }
        Ok(out.into_iter().collect())
    }
}

/// What resource scopes are merged by: context, type, and restrictions up to equivalence.
type GroupKey = (Context, ResourceType, Option<RestrictionKey>);

/// A granted set indexed for coverage checks: the union of permissions per (context, type,
/// restrictions up to equivalence). A requested resource scope is reached exactly by the
/// granted groups on its context with `*` or its type, unrestricted or equivalently restricted
/// (see [`ResourceScope::reaches`]): at most four look-ups, so checking n scopes against m
/// costs O(n + m), not O(n · m) restriction comparisons.
struct CoverageIndex<'a> {
    granted: &'a ScopeSet,
    groups: HashMap<GroupKey, Permissions>,
}

impl<'a> CoverageIndex<'a> {
    fn new(granted: &'a ScopeSet) -> Self {
        let mut groups: HashMap<GroupKey, Permissions> = HashMap::new();
        for view in granted.order.iter().filter_map(Scope::resource_view) {
            let key = (
                view.context(),
                view.resource().clone(),
                view.restrictions().map(|r| r.key()),
            );
            let entry = groups.entry(key).or_insert(Permissions::EMPTY);
            *entry |= view.permissions();
        }
        Self { granted, groups }
    }

    /// See [`ScopeSet::missing_part`].
    fn missing_part(&self, scope: &Scope) -> Option<Scope> {
        let Some(wanted) = scope.resource_view() else {
            let covered = self.granted.members.contains(scope)
                || match scope {
                    Scope::FhirUser => self.granted.members.contains(&Scope::Profile),
                    Scope::Profile => self.granted.members.contains(&Scope::FhirUser),
                    _ => false,
                };
            return if covered { None } else { Some(scope.clone()) };
        };
        let context = wanted.context();
        let restriction = wanted.restrictions().map(|r| r.key());
        let mut keys: Vec<GroupKey> = vec![(context, ResourceType::Any, None)];
        if *wanted.resource() != ResourceType::Any {
            keys.push((context, wanted.resource().clone(), None));
        }
        if let Some(r) = &restriction {
            keys.push((context, ResourceType::Any, Some(r.clone())));
            if *wanted.resource() != ResourceType::Any {
                keys.push((context, wanted.resource().clone(), Some(r.clone())));
            }
        }
        let granted = keys
            .iter()
            .filter_map(|k| self.groups.get(k))
            .fold(Permissions::EMPTY, |acc, p| acc | *p);
        let missing = wanted.permissions().difference(granted);
        if missing.is_empty() {
            None
        } else if missing == wanted.permissions() {
            Some(scope.clone())
        } else {
            Some(Scope::Resource(ResourceScope::from_parts(
                wanted.context(),
                wanted.resource().clone(),
                missing,
                wanted.restrictions().cloned(),
            )))
        }
    }
}

/// Something a [`ScopeSet`] can cover: a [`Scope`], a [`ResourceScope`] or a [`ScopeSet`].
///
/// Sealed: it cannot be implemented outside this crate.
pub trait Coverable: sealed::Sealed {
    /// Whether `granted` covers `self`; see [`ScopeSet::covers`].
    fn is_covered_by(&self, granted: &ScopeSet) -> bool;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Scope {}
    impl Sealed for super::ResourceScope {}
    impl Sealed for super::ScopeSet {}
}

impl Coverable for Scope {
    fn is_covered_by(&self, granted: &ScopeSet) -> bool {
        granted.missing_part(self).is_none()
    }
}

impl Coverable for ResourceScope {
    fn is_covered_by(&self, granted: &ScopeSet) -> bool {
        granted
            .missing_part(&Scope::Resource(self.clone()))
            .is_none()
    }
}

impl Coverable for ScopeSet {
    fn is_covered_by(&self, granted: &ScopeSet) -> bool {
        let index = CoverageIndex::new(granted);
        self.order
            .iter()
            .all(|scope| index.missing_part(scope).is_none())
    }
}

impl PartialEq for ScopeSet {
    fn eq(&self, other: &Self) -> bool {
        self.members == other.members
    }
}

impl Eq for ScopeSet {}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.order).finish()
    }
}

/// The scopes joined by single spaces.
impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.order.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            scope.fmt(f)?;
        }
        Ok(())
    }
}

/// Strict parsing, as [`ScopeSet::parse`].
impl FromStr for ScopeSet {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl FromIterator<Scope> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        let mut set = ScopeSet::new();
        set.extend(iter);
        set
    }
}

impl Extend<Scope> for ScopeSet {
    fn extend<I: IntoIterator<Item = Scope>>(&mut self, iter: I) {
        for scope in iter {
            self.insert(scope);
        }
    }
}

impl IntoIterator for ScopeSet {
    type Item = Scope;
    type IntoIter = std::vec::IntoIter<Scope>;
    fn into_iter(self) -> Self::IntoIter {
        self.order.into_iter()
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;
    fn into_iter(self) -> Self::IntoIter {
        self.order.iter()
    }
}

impl From<Scope> for ScopeSet {
    fn from(scope: Scope) -> Self {
        std::iter::once(scope).collect()
    }
}

/// The result of [`ScopeSet::parse_lenient`]: the scopes that parsed, and the tokens that did
/// not.
#[derive(Debug, Clone)]
pub struct LenientScopeSet {
    scopes: ScopeSet,
    unrecognized: Vec<UnrecognizedScope>,
}

impl LenientScopeSet {
    /// The scopes that parsed.
    pub fn scopes(&self) -> &ScopeSet {
        &self.scopes
    }

    /// The scopes that parsed, by value.
    pub fn into_scopes(self) -> ScopeSet {
        self.scopes
    }

    /// The tokens that did not parse, in order, each once.
    pub fn unrecognized(&self) -> &[UnrecognizedScope] {
        &self.unrecognized
    }
}

/// A token of a server's scope string that is not a scope this crate understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnrecognizedScope {
    text: String,
    error: ScopeError,
}

impl UnrecognizedScope {
    /// The token exactly as the server sent it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Why it did not parse.
    pub fn error(&self) -> &ScopeError {
        &self.error
    }
}

/// How a granted set relates to the requested one (SC-5.13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ScopeRelation {
    /// Each covers the other (the same grants, perhaps written differently).
    Equivalent,
    /// Less than requested and nothing more (this includes an empty grant).
    Narrower,
    /// Everything requested and more.
    Broader,
    /// Some of the request is missing and something else was granted.
    Different,
}

/// What differs between a requested and a granted set; see [`ScopeSet::difference`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeDiff {
    missing: ScopeSet,
    extra: ScopeSet,
}

impl ScopeDiff {
    /// What was requested and not granted, in request order. A requested scope granted in part
    /// appears as a v2 scope with only the missing permissions (requested
    /// `patient/Observation.crs`, granted `patient/Observation.rs`: missing
    /// `patient/Observation.c`); one not granted at all appears as requested.
    pub fn missing(&self) -> &ScopeSet {
        &self.missing
    }

    /// What was granted beyond the request, in grant order, reduced the same way: a broader
    /// grant such as `patient/*.rs` for a request of `patient/Observation.rs` appears whole.
    pub fn extra(&self) -> &ScopeSet {
        &self.extra
    }

    /// Whether everything requested was granted.
    pub fn is_fully_granted(&self) -> bool {
        self.missing.is_empty()
    }

    /// The relation of the grant to the request.
    pub fn relation(&self) -> ScopeRelation {
        match (self.missing.is_empty(), self.extra.is_empty()) {
            (true, true) => ScopeRelation::Equivalent,
            (false, true) => ScopeRelation::Narrower,
            (true, false) => ScopeRelation::Broader,
            (false, false) => ScopeRelation::Different,
        }
    }
}

/// Builds a [`ScopeSet`]; every problem is reported by [`build`](Self::build).
///
/// ```
/// use smart_fhir_scopes::{ResourceScope, ScopeSet};
///
/// let scopes = ScopeSet::builder()
///     .resource(ResourceScope::patient("Observation").read().search())
///     .resource(ResourceScope::patient("Patient").read())
///     .launch_patient()
///     .openid()
///     .fhir_user()
///     .offline_access()
///     .build()?;
/// assert_eq!(
///     scopes.to_string(),
///     "patient/Observation.rs patient/Patient.r launch/patient openid fhirUser offline_access"
/// );
/// # Ok::<(), smart_fhir_scopes::ScopeError>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ScopeSetBuilder {
    scopes: ScopeSet,
    error: Option<ScopeError>,
}

impl ScopeSetBuilder {
    /// Adds a scope.
    pub fn scope(mut self, scope: impl Into<Scope>) -> Self {
        self.scopes.insert(scope.into());
        self
    }

    /// Adds a resource scope from its builder; its errors surface in [`build`](Self::build).
    pub fn resource(mut self, builder: ResourceScopeBuilder) -> Self {
        match builder.build() {
            Ok(scope) => {
                self.scopes.insert(Scope::Resource(scope));
            }
            Err(error) => self.record(error),
        }
        self
    }

    /// Adds a launch scope.
    pub fn launch(self, scope: LaunchScope) -> Self {
        self.scope(scope)
    }

    /// Adds `launch` (EHR launch).
    pub fn launch_ehr(self) -> Self {
        self.scope(LaunchScope::Ehr)
    }

    /// Adds `launch/patient`.
    pub fn launch_patient(self) -> Self {
        self.scope(LaunchScope::patient())
    }

    /// Adds `launch/encounter`.
    pub fn launch_encounter(self) -> Self {
        self.scope(LaunchScope::encounter())
    }

    /// Adds `openid`.
    pub fn openid(self) -> Self {
        self.scope(Scope::OpenId)
    }

    /// Adds `fhirUser`.
    pub fn fhir_user(self) -> Self {
        self.scope(Scope::FhirUser)
    }

    /// Adds `offline_access`.
    pub fn offline_access(self) -> Self {
        self.scope(Scope::OfflineAccess)
    }

    /// Adds `online_access`.
    pub fn online_access(self) -> Self {
        self.scope(Scope::OnlineAccess)
    }

    /// Adds an extension scope (an absolute URI or `__name`).
    pub fn extension(mut self, text: impl Into<String>) -> Self {
        match ExtensionScope::new(text) {
            Ok(scope) => {
                self.scopes.insert(Scope::Extension(scope));
            }
            Err(error) => self.record(error),
        }
        self
    }

    /// Parses `text` as a space-separated scope string ([`ScopeSet::parse`]) and adds its
    /// scopes.
    pub fn parse(mut self, text: &str) -> Self {
        match ScopeSet::parse(text) {
            Ok(scopes) => self.scopes.extend(scopes),
            Err(error) => self.record(error),
        }
        self
    }

    fn record(&mut self, error: ScopeError) {
        if self.error.is_none() {
            self.error = Some(error);
        }
    }

    /// The set, in the order the scopes were added, or the first error.
    pub fn build(self) -> Result<ScopeSet, ScopeError> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.scopes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 11 §1 (`scope covers` quadratic in restricted scopes), SC-5.16: n restricted
    /// scopes checked against m granted ones compute each restriction key once (n + m), not
    /// once per pair; the answer is unchanged (covered, and one missing found).
    #[test]
    fn sc_5_16_coverage_is_linear_in_restricted_scopes() {
        let n = 300;
        let text = |i: usize| format!("patient/Observation.rs?category=c{i}&code=x{i}");
        let granted: ScopeSet = (0..n).map(|i| text(i).parse::<Scope>().unwrap()).collect();
        let requested: ScopeSet = (0..n)
            .map(|i| text(n - 1 - i).parse::<Scope>().unwrap())
            .collect();
        let before = crate::restrictions::KEY_CALLS.with(|c| c.get());
        assert!(granted.covers(&requested));
        let diff = requested.difference(&granted);
        let calls = crate::restrictions::KEY_CALLS.with(|c| c.get()) - before;
        assert!(diff.missing().is_empty() && diff.extra().is_empty());
        // covers: n + n; difference: both ways, n + n each.
        assert!(calls <= 6 * n, "{calls} restriction keys for {n} scopes");
        let mut more = requested.clone();
        more.insert(text(n).parse::<Scope>().unwrap());
        assert!(!granted.covers(&more));
        assert_eq!(more.difference(&granted).missing().to_string(), text(n));
    }
    use crate::error::ScopeErrorKind;

    fn set(text: &str) -> ScopeSet {
        ScopeSet::parse(text).unwrap()
    }

    fn scope(text: &str) -> Scope {
        Scope::parse(text).unwrap()
    }

    #[test]
    fn parse_keeps_order_and_drops_duplicates() {
        let s = set("  openid  patient/*.rs openid launch ");
        assert_eq!(s.len(), 3);
        assert_eq!(s.to_string(), "openid patient/*.rs launch");
        assert!(ScopeSet::parse("").unwrap().is_empty());
        assert!(ScopeSet::parse("   ").unwrap().is_empty());
        let e = ScopeSet::parse("openid\tlaunch").unwrap_err();
        assert_eq!(
            e.kind(),
            &ScopeErrorKind::InvalidCharacter { character: '\t' }
        );
        let e = ScopeSet::parse("openid patient/Observation.rx").unwrap_err();
        assert_eq!(e.scope(), "patient/Observation.rx");
    }

    #[test]
    fn set_operations() {
        let mut s = ScopeSet::new();
        assert!(s.is_empty());
        assert!(s.insert(scope("openid")));
        assert!(!s.insert(scope("openid")));
        assert!(s.insert(scope("launch/patient")));
        assert!(s.insert(scope("launch")));
        assert!(s.insert(scope("offline_access")));
        assert!(s.contains(&scope("openid")));
        assert!(!s.contains(&scope("fhirUser")));
        assert!(s.has_openid() && s.has_offline_access());
        assert!(!s.has_fhir_user() && !s.has_online_access());
        assert_eq!(
            s.launch_scopes()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["launch/patient", "launch"]
        );
        assert!(s.remove(&scope("openid")));
        assert!(!s.remove(&scope("openid")));
        assert_eq!(s.iter().count(), 3);
        assert_eq!(s.to_string(), "launch/patient launch offline_access");
        assert!(set("profile").has_fhir_user());
        assert_eq!(set("a:b openid"), set("openid a:b"));
        assert_ne!(set("openid"), set("openid fhirUser"));
        let from_scope: ScopeSet = scope("openid").into();
        assert_eq!(from_scope.len(), 1);
        let owned: Vec<Scope> = set("openid launch").into_iter().collect();
        assert_eq!(owned.len(), 2);
    }

    #[test]
    fn sc_5_13_lenient_parse_never_fails_and_keeps_the_odd_ones() {
        let lenient = ScopeSet::parse_lenient(
            "patient/Observation.sr\tlaunch/Patient  weird Weird weird patient/Observation.rx\n",
        );
        assert_eq!(
            lenient.scopes().to_string(),
            "patient/Observation.rs launch/patient"
        );
        let odd: Vec<&str> = lenient.unrecognized().iter().map(|u| u.text()).collect();
        assert_eq!(odd, ["weird", "Weird", "patient/Observation.rx"]);
        assert_eq!(
            lenient.unrecognized()[2].error().kind(),
            &ScopeErrorKind::UnknownPermission { letter: 'x' }
        );
        assert!(ScopeSet::parse_lenient("").into_scopes().is_empty());
    }

    #[test]
    fn sc_5_16_coverage_examples() {
        assert!(set("patient/*.rs").covers(&scope("patient/Observation.r")));
        assert!(!set("patient/Observation.rs?category=x").covers(&scope("patient/Observation.rs")));
        assert!(set("patient/Observation.rs").covers(&scope("patient/Observation.rs?category=x")));
        assert!(set("patient/Observation.rs?category=x")
            .covers(&scope("patient/Observation.rs?category=x")));
        assert!(
            set("patient/Observation.rs?a=1&b=2").covers(&scope("patient/Observation.r?b=2&a=1"))
        );
        assert!(!set("user/*.rs").covers(&scope("patient/Observation.r")));
        assert!(!set("system/*.cruds").covers(&scope("patient/Observation.r")));
        assert!(!set("patient/*.cruds").covers(&scope("user/Observation.r")));
        assert!(set("fhirUser").covers(&scope("profile")));
        assert!(set("profile").covers(&scope("fhirUser")));
        assert!(!set("launch").covers(&scope("launch/patient")));
        assert!(!set("openid").covers(&scope("fhirUser")));
        assert!(set("openid").covers(&ScopeSet::new()));
        assert!(ScopeSet::new().covers(&ScopeSet::new()));
        assert!(!ScopeSet::new().covers(&scope("openid")));
        let rs = ResourceScope::patient("Observation")
            .read()
            .build()
            .unwrap();
        assert!(set("patient/Observation.read").covers(&rs));
    }

    #[test]
    fn sc_5_8_union_covers_split_permissions() {
        let split = set("patient/Observation.r patient/Observation.s");
        assert!(split.covers(&scope("patient/Observation.rs")));
        assert!(split.covers(&set("patient/Observation.rs")));
        assert!(set("patient/Observation.rs").covers(&split));
        assert!(set("patient/*.r patient/Observation.s").covers(&scope("patient/Observation.rs")));
        assert!(!set("patient/*.r patient/Patient.s").covers(&scope("patient/Observation.rs")));
        // A restricted grant adds to an unrestricted one only for the same restriction.
        assert!(
            set("patient/Observation.r patient/Observation.s?category=x")
                .covers(&scope("patient/Observation.rs?category=x"))
        );
        assert!(
            !set("patient/Observation.r patient/Observation.s?category=x")
                .covers(&scope("patient/Observation.rs?category=y"))
        );
    }

    #[test]
    fn sc_5_8_normalize_merges_reduces_and_sorts() {
        assert_eq!(
            set("patient/Observation.r patient/Observation.s")
                .normalize()
                .to_string(),
            "patient/Observation.rs"
        );
        assert_eq!(
            set("__ext patient/Observation.crs offline_access patient/*.rs user/*.read launch openid profile fhirUser launch/patient")
                .normalize()
                .to_string(),
            "openid fhirUser profile launch launch/patient offline_access patient/*.rs patient/Observation.c user/*.rs __ext"
        );
        assert_eq!(
            set("patient/Observation.read patient/Observation.s patient/*.write")
                .normalize()
                .to_string(),
            "patient/*.cud patient/Observation.rs"
        );
        assert_eq!(
            set("patient/Observation.r?b=2&a=1 patient/Observation.s?a=1&b=2 patient/Observation.rs")
                .normalize()
                .to_string(),
            "patient/Observation.rs"
        );
        assert_eq!(
            set(
                "patient/Observation.r?b=2&a=1 patient/Observation.s?a=1&b=2 patient/Observation.r"
            )
            .normalize()
            .to_string(),
            "patient/Observation.r patient/Observation.s?b=2&a=1"
        );
        assert_eq!(
            set("patient/*.cruds patient/Observation.rs").normalize(),
            set("patient/*.cruds")
        );
        assert!(ScopeSet::new().normalize().is_empty());
    }

    #[test]
    fn sc_5_7_to_v2_maps_every_v1_scope() {
        assert_eq!(
            set("openid patient/*.read user/Observation.write system/*.*")
                .to_v2()
                .to_string(),
            "openid patient/*.rs user/Observation.cud system/*.cruds"
        );
        assert_eq!(set("patient/*.read patient/*.rs").to_v2().len(), 1);
    }

    #[test]
    fn sc_1_14_to_v1_where_exact() {
        assert_eq!(
            set("launch patient/Observation.r patient/Observation.s user/*.cud system/*.cruds openid")
                .to_v1()
                .unwrap()
                .to_string(),
            "launch openid patient/Observation.read user/*.write system/*.*"
        );
        let e = set("patient/Observation.r").to_v1().unwrap_err();
        assert!(matches!(
            e.kind(),
            ScopeErrorKind::NotRepresentableInV1 { .. }
        ));
        assert_eq!(e.scope(), "patient/Observation.r");
        assert!(set("patient/Observation.rs?category=x").to_v1().is_err());
        assert!(set("patient/Observation.crs").to_v1().is_err());
        assert_eq!(
            set("patient/Observation.read").to_v1().unwrap(),
            set("patient/Observation.read")
        );
    }

    #[test]
    fn sc_5_13_difference_reports_missing_and_extra() {
        let requested = set("patient/Observation.crs launch/patient openid");
        let granted = set("patient/Observation.rs openid patient/*.r");
        let diff = requested.difference(&granted);
        assert_eq!(
            diff.missing().to_string(),
            "patient/Observation.c launch/patient"
        );
        assert_eq!(diff.extra().to_string(), "patient/*.r");
        assert_eq!(diff.relation(), ScopeRelation::Different);
        assert!(!diff.is_fully_granted());

        let same = set("patient/Observation.rs")
            .difference(&set("patient/Observation.r patient/Observation.s"));
        assert_eq!(same.relation(), ScopeRelation::Equivalent);
        assert!(same.is_fully_granted());

        let narrower =
            set("patient/Observation.rs openid").difference(&set("patient/Observation.r"));
        assert_eq!(narrower.relation(), ScopeRelation::Narrower);
        assert_eq!(
            narrower.missing().to_string(),
            "patient/Observation.s openid"
        );

        let broader = set("patient/Observation.rs").difference(&set("patient/*.cruds"));
        assert_eq!(broader.relation(), ScopeRelation::Broader);
        assert_eq!(broader.extra().to_string(), "patient/*.cruds");

        let empty = set("patient/Observation.read").difference(&ScopeSet::new());
        assert_eq!(empty.relation(), ScopeRelation::Narrower);
        assert_eq!(empty.missing().to_string(), "patient/Observation.read");

        let partial_v1 = set("patient/Observation.read").difference(&set("patient/Observation.r"));
        assert_eq!(partial_v1.missing().to_string(), "patient/Observation.s");

        let restricted =
            set("patient/Observation.rs").difference(&set("patient/Observation.rs?category=x"));
        assert_eq!(restricted.missing().to_string(), "patient/Observation.rs");
        assert_eq!(restricted.extra().len(), 0);
    }

    #[test]
    fn sc_5_13_permissions_for_enables_features() {
        let granted = set("patient/*.r patient/Observation.s patient/Condition.c?category=x user/Observation.cruds");
        assert_eq!(
            granted
                .permissions_for(Context::Patient, "Observation")
                .to_string(),
            "rs"
        );
        assert_eq!(
            granted
                .permissions_for(Context::Patient, "Condition")
                .to_string(),
            "r"
        );
        assert_eq!(
            granted.permissions_for(Context::Patient, "*").to_string(),
            "r"
        );
        assert_eq!(
            granted.permissions_for(Context::System, "Observation"),
            Permissions::EMPTY
        );
        assert_eq!(
            set("patient/Observation.read").permissions_for(Context::Patient, "Observation"),
            Permissions::READ_SEARCH
        );
    }

    #[test]
    fn builder_collects_and_reports_the_first_error() {
        let built = ScopeSet::builder()
            .resource(ResourceScope::system("*").read().search())
            .launch(LaunchScope::resource("ImagingStudy").unwrap())
            .launch_ehr()
            .launch_encounter()
            .online_access()
            .extension("__darkMode")
            .parse("user/Patient.r openid")
            .scope(scope("openid"))
            .build()
            .unwrap();
        assert_eq!(
            built.to_string(),
            "system/*.rs launch/imagingstudy launch launch/encounter online_access __darkMode user/Patient.r openid"
        );
        let e = ScopeSet::builder()
            .openid()
            .resource(ResourceScope::patient("observation").read())
            .parse("patient/Observation.rx")
            .build()
            .unwrap_err();
        assert!(matches!(
            e.kind(),
            ScopeErrorKind::InvalidResourceType { .. }
        ));
        let e = ScopeSet::builder().extension("nope").build().unwrap_err();
        assert_eq!(e.kind(), &ScopeErrorKind::Unrecognized);
        let e = ScopeSet::builder().parse("openid bad").build().unwrap_err();
        assert_eq!(e.scope(), "bad");
    }
}
