use std::fmt;
use std::ops::{BitAnd, BitOr, BitOrAssign};
use std::str::FromStr;

use crate::error::{ScopeError, ScopeErrorKind};

/// One SMART v2 permission (SC-5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Permission {
    /// `c`: type-level create.
    Create,
    /// `r`: read, vread and instance history.
    Read,
    /// `u`: update and patch.
    Update,
    /// `d`: delete.
    Delete,
    /// `s`: search, and type- and system-level history.
    Search,
}

impl Permission {
    /// Every permission, in the canonical `c r u d s` order.
    pub const ALL: [Permission; 5] = [
        Permission::Create,
        Permission::Read,
        Permission::Update,
        Permission::Delete,
        Permission::Search,
    ];

    /// The scope letter: `c`, `r`, `u`, `d` or `s`.
    pub const fn letter(self) -> char {
        match self {
            Self::Create => 'c',
            Self::Read => 'r',
            Self::Update => 'u',
            Self::Delete => 'd',
            Self::Search => 's',
        }
    }

    /// The permission a scope letter stands for.
    pub const fn from_letter(letter: char) -> Option<Self> {
        match letter {
            'c' => Some(Self::Create),
            'r' => Some(Self::Read),
            'u' => Some(Self::Update),
            'd' => Some(Self::Delete),
            's' => Some(Self::Search),
            _ => None,
        }
    }

    const fn bit(self) -> u8 {
        match self {
            Self::Create => 1,
            Self::Read => 1 << 1,
            Self::Update => 1 << 2,
            Self::Delete => 1 << 3,
            Self::Search => 1 << 4,
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// A set of SMART v2 permissions, written as a subsequence of `cruds` (SC-5.1, SC-5.2).
///
/// ```
/// use smart_fhir_scopes::Permissions;
///
/// let rs: Permissions = "rs".parse()?;
/// assert!(rs.contains(Permissions::READ));
/// assert!(!rs.contains(Permissions::CREATE));
/// assert_eq!((Permissions::SEARCH | Permissions::CREATE).to_string(), "cs");
/// assert!("sr".parse::<Permissions>().is_err()); // not in `cruds` order
/// # Ok::<(), smart_fhir_scopes::ScopeError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Permissions(u8);

impl Permissions {
    /// No permission. Never valid in a scope (SC-5.3), but useful to accumulate unions.
    pub const EMPTY: Permissions = Permissions(0);
    /// `c`.
    pub const CREATE: Permissions = Permissions(Permission::Create.bit());
    /// `r`.
    pub const READ: Permissions = Permissions(Permission::Read.bit());
    /// `u`.
    pub const UPDATE: Permissions = Permissions(Permission::Update.bit());
    /// `d`.
    pub const DELETE: Permissions = Permissions(Permission::Delete.bit());
    /// `s`.
    pub const SEARCH: Permissions = Permissions(Permission::Search.bit());
    /// `cruds`: every permission (v1 `*`).
    pub const ALL: Permissions = Permissions(0b1_1111);
    /// `rs`: what v1 `read` means (SC-5.7).
    pub const READ_SEARCH: Permissions = Permissions(Self::READ.0 | Self::SEARCH.0);
    /// `cud`: what v1 `write` means (SC-5.7).
    pub const WRITE: Permissions = Permissions(Self::CREATE.0 | Self::UPDATE.0 | Self::DELETE.0);

    /// Whether no permission is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every permission of `other` is in `self`.
    pub const fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether `permission` is in `self`.
    pub const fn has(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    /// The permissions in either set.
    pub const fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    /// The permissions in both sets.
    pub const fn intersection(self, other: Permissions) -> Permissions {
        Permissions(self.0 & other.0)
    }

    /// The permissions of `self` that are not in `other`.
    pub const fn difference(self, other: Permissions) -> Permissions {
        Permissions(self.0 & !other.0)
    }

    /// How many permissions are set.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The permissions, in `c r u d s` order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL.into_iter().filter(move |p| self.has(*p))
    }

    /// The v1 permission with exactly this meaning: `rs` → `read`, `cud` → `write`, `cruds` →
    /// `*` (SC-5.7); `None` for any other set.
    pub const fn to_v1(self) -> Option<V1Access> {
        match self {
            Self::READ_SEARCH => Some(V1Access::Read),
            Self::WRITE => Some(V1Access::Write),
            Self::ALL => Some(V1Access::All),
            _ => None,
        }
    }

    /// Parses a permission suffix. Strict: a non-empty subsequence of `cruds`; lenient: any
    /// order, repeats allowed.
    pub(crate) fn parse_suffix(text: &str, lenient: bool) -> Result<Self, ScopeErrorKind> {
        if text.is_empty() {
            return Err(ScopeErrorKind::EmptyPermissions);
        }
        let mut set = Permissions::EMPTY;
        let mut in_order = true;
        let mut last_bit = 0u8;
        for letter in text.chars() {
            let Some(permission) = Permission::from_letter(letter) else {
                return Err(ScopeErrorKind::UnknownPermission { letter });
            };
            let bit = permission.bit();
            if set.has(permission) {
                if !lenient {
                    return Err(ScopeErrorKind::RepeatedPermission { letter });
                }
            } else if bit < last_bit {
                in_order = false;
            }
            last_bit = last_bit.max(bit);
            set.0 |= bit;
        }
        if !in_order && !lenient {
            return Err(ScopeErrorKind::PermissionOrder {
                found: text.to_owned(),
            });
        }
        Ok(set)
    }
}

impl From<Permission> for Permissions {
    fn from(permission: Permission) -> Self {
        Permissions(permission.bit())
    }
}

impl FromIterator<Permission> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        iter.into_iter()
            .fold(Permissions::EMPTY, |acc, p| acc.union(p.into()))
    }
}

impl BitOr for Permissions {
    type Output = Permissions;
    fn bitor(self, rhs: Permissions) -> Permissions {
        self.union(rhs)
    }
}

impl BitOrAssign for Permissions {
    fn bitor_assign(&mut self, rhs: Permissions) {
        *self = self.union(rhs);
    }
}

impl BitAnd for Permissions {
    type Output = Permissions;
    fn bitand(self, rhs: Permissions) -> Permissions {
        self.intersection(rhs)
    }
}

/// Writes the letters in `c r u d s` order; the empty set writes nothing.
impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for permission in self.iter() {
            write!(f, "{}", permission.letter())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Permissions({self})")
    }
}

/// Parses a non-empty subsequence of `cruds` (canonical order, no repeats: SC-5.2, SC-5.3).
impl FromStr for Permissions {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Permissions::parse_suffix(s, false).map_err(|kind| ScopeError::new(s, kind))
    }
}

/// A SMART v1 permission: `read`, `write` or `*` (SC-5.6).
///
/// Exhaustive by decision: SMART v1 is frozen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum V1Access {
    /// `read`, meaning v2 `rs`.
    Read,
    /// `write`, meaning v2 `cud`.
    Write,
    /// `*`, meaning v2 `cruds`.
    All,
}

impl V1Access {
    /// The v2 permissions with the same meaning (SC-5.7): `read` → `rs`, `write` → `cud`,
    /// `*` → `cruds`.
    pub const fn permissions(self) -> Permissions {
        match self {
            Self::Read => Permissions::READ_SEARCH,
            Self::Write => Permissions::WRITE,
            Self::All => Permissions::ALL,
        }
    }

    /// The scope suffix: `read`, `write` or `*`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::All => "*",
        }
    }

    pub(crate) fn from_suffix(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Self::Read),
            "write" => Some(Self::Write),
            "*" => Some(Self::All),
            _ => None,
        }
    }
}

impl fmt::Display for V1Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sc_5_1_every_canonical_subsequence_round_trips() {
        for bits in 1u8..32 {
            let p = Permissions(bits);
            let text = p.to_string();
            assert_eq!(text.parse::<Permissions>(), Ok(p), "{text}");
            assert_eq!(text.len(), p.len());
        }
    }

    #[test]
    fn sc_5_2_out_of_order_or_repeated_letters_are_refused_strictly() {
        let e = "sr".parse::<Permissions>().unwrap_err();
        assert_eq!(
            e.kind(),
            &ScopeErrorKind::PermissionOrder { found: "sr".into() }
        );
        let e = "rrs".parse::<Permissions>().unwrap_err();
        assert_eq!(
            e.kind(),
            &ScopeErrorKind::RepeatedPermission { letter: 'r' }
        );
        assert_eq!(
            Permissions::parse_suffix("srr", true),
            Ok(Permissions::READ_SEARCH)
        );
    }

    #[test]
    fn sc_5_3_empty_permission_suffix_is_refused() {
        let e = "".parse::<Permissions>().unwrap_err();
        assert_eq!(e.kind(), &ScopeErrorKind::EmptyPermissions);
    }

    #[test]
    fn unknown_letters_are_named() {
        let e = "rx".parse::<Permissions>().unwrap_err();
        assert_eq!(e.kind(), &ScopeErrorKind::UnknownPermission { letter: 'x' });
        let e = "R".parse::<Permissions>().unwrap_err();
        assert_eq!(e.kind(), &ScopeErrorKind::UnknownPermission { letter: 'R' });
    }

    #[test]
    fn set_operations() {
        let rs = Permissions::READ | Permissions::SEARCH;
        assert_eq!(rs, Permissions::READ_SEARCH);
        assert!(Permissions::ALL.contains(rs));
        assert!(!rs.contains(Permissions::ALL));
        assert!(rs.contains(Permissions::EMPTY));
        assert_eq!(Permissions::ALL.difference(rs), Permissions::WRITE);
        assert_eq!(rs & Permissions::READ, Permissions::READ);
        assert!(rs.has(Permission::Search) && !rs.has(Permission::Delete));
        assert_eq!(
            rs.iter().collect::<Vec<_>>(),
            [Permission::Read, Permission::Search]
        );
        assert_eq!(
            [Permission::Search, Permission::Create]
                .into_iter()
                .collect::<Permissions>()
                .to_string(),
            "cs"
        );
        assert_eq!(format!("{:?}", rs), "Permissions(rs)");
    }

    #[test]
    fn sc_5_7_v1_meanings() {
        assert_eq!(V1Access::Read.permissions().to_string(), "rs");
        assert_eq!(V1Access::Write.permissions().to_string(), "cud");
        assert_eq!(V1Access::All.permissions().to_string(), "cruds");
        for v1 in [V1Access::Read, V1Access::Write, V1Access::All] {
            assert_eq!(v1.permissions().to_v1(), Some(v1));
            assert_eq!(V1Access::from_suffix(v1.as_str()), Some(v1));
        }
        assert_eq!(Permissions::READ.to_v1(), None);
        assert_eq!(
            (Permissions::READ_SEARCH | Permissions::CREATE).to_v1(),
            None
        );
    }
}
