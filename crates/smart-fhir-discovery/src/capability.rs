use std::convert::Infallible;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// A SMART capability (SC-1.8), as listed in the configuration's `capabilities`.
///
/// Strings this crate does not know are kept as [`Capability::Unknown`] (SC-1.9): other IGs
/// define their own, some as full URIs. Equality and hashing go by the string, so
/// `Capability::Unknown("launch-ehr".into()) == Capability::LaunchEhr`.
///
/// ```
/// use smart_fhir_discovery::Capability;
///
/// let c: Capability = "client-confidential-asymmetric".parse().unwrap();
/// assert_eq!(c, Capability::ClientConfidentialAsymmetric);
/// assert_eq!(c.to_string(), "client-confidential-asymmetric");
/// let other = Capability::from("http://sdo.example.org/example-new-capability");
/// assert!(matches!(other, Capability::Unknown(_)));
/// ```
#[derive(Debug, Clone, Eq)]
#[non_exhaustive]
pub enum Capability {
    /// `launch-ehr`: EHR launch.
    LaunchEhr,
    /// `launch-standalone`: standalone launch.
    LaunchStandalone,
    /// `authorize-post`: the authorize endpoint accepts POST (SC-1.12).
    AuthorizePost,
    /// `client-public`: public clients (no client authentication).
    ClientPublic,
    /// `client-confidential-symmetric`: client secret authentication.
    ClientConfidentialSymmetric,
    /// `client-confidential-asymmetric`: `private_key_jwt` authentication.
    ClientConfidentialAsymmetric,
    /// `sso-openid-connect`: OpenID Connect identity (`openid fhirUser`).
    SsoOpenidConnect,
    /// `context-banner`: the `need_patient_banner` launch context.
    ContextBanner,
    /// `context-style`: the `smart_style_url` launch context.
    ContextStyle,
    /// `context-ehr-patient`: patient context on EHR launch.
    ContextEhrPatient,
    /// `context-ehr-encounter`: encounter context on EHR launch.
    ContextEhrEncounter,
    /// `context-standalone-patient`: patient context on standalone launch.
    ContextStandalonePatient,
    /// `context-standalone-encounter`: encounter context on standalone launch.
    ContextStandaloneEncounter,
    /// `permission-offline`: refresh tokens through `offline_access`.
    PermissionOffline,
    /// `permission-online`: refresh tokens through `online_access`.
    PermissionOnline,
    /// `permission-patient`: `patient/` scopes.
    PermissionPatient,
    /// `permission-user`: `user/` scopes.
    PermissionUser,
    /// `permission-v1`: SMART v1 scope syntax (`patient/Observation.read`).
    PermissionV1,
    /// `permission-v2`: SMART v2 scope syntax (`patient/Observation.rs`).
    PermissionV2,
    /// `smart-app-state`: the app state endpoint.
    SmartAppState,
    /// Any other capability string (SC-1.9).
    Unknown(String),
}

impl Capability {
    /// Every capability the SMART App Launch IG 2.2 defines, in the order the IG lists them.
    pub const KNOWN: [Capability; 20] = [
        Self::LaunchEhr,
        Self::LaunchStandalone,
        Self::AuthorizePost,
        Self::ClientPublic,
        Self::ClientConfidentialSymmetric,
        Self::ClientConfidentialAsymmetric,
        Self::SsoOpenidConnect,
        Self::ContextBanner,
        Self::ContextStyle,
        Self::ContextEhrPatient,
        Self::ContextEhrEncounter,
        Self::ContextStandalonePatient,
        Self::ContextStandaloneEncounter,
        Self::PermissionOffline,
        Self::PermissionOnline,
        Self::PermissionPatient,
        Self::PermissionUser,
        Self::PermissionV1,
        Self::PermissionV2,
        Self::SmartAppState,
    ];

    /// The capability string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::LaunchEhr => "launch-ehr",
            Self::LaunchStandalone => "launch-standalone",
            Self::AuthorizePost => "authorize-post",
            Self::ClientPublic => "client-public",
            Self::ClientConfidentialSymmetric => "client-confidential-symmetric",
            Self::ClientConfidentialAsymmetric => "client-confidential-asymmetric",
            Self::SsoOpenidConnect => "sso-openid-connect",
            Self::ContextBanner => "context-banner",
            Self::ContextStyle => "context-style",
            Self::ContextEhrPatient => "context-ehr-patient",
            Self::ContextEhrEncounter => "context-ehr-encounter",
            Self::ContextStandalonePatient => "context-standalone-patient",
            Self::ContextStandaloneEncounter => "context-standalone-encounter",
            Self::PermissionOffline => "permission-offline",
            Self::PermissionOnline => "permission-online",
            Self::PermissionPatient => "permission-patient",
            Self::PermissionUser => "permission-user",
            Self::PermissionV1 => "permission-v1",
            Self::PermissionV2 => "permission-v2",
            Self::SmartAppState => "smart-app-state",
            Self::Unknown(s) => s,
        }
    }

    /// Whether this is a capability the IG defines.
    pub fn is_known(&self) -> bool {
        Self::KNOWN.iter().any(|k| k.as_str() == self.as_str())
    }
}

impl From<&str> for Capability {
    /// Capability strings are case-sensitive codes: `Launch-EHR` is an unknown capability.
    fn from(s: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|k| k.as_str() == s)
            .cloned()
            .unwrap_or_else(|| Self::Unknown(s.to_owned()))
    }
}

impl From<String> for Capability {
    fn from(s: String) -> Self {
        match Self::KNOWN.iter().find(|k| k.as_str() == s) {
            Some(known) => known.clone(),
            None => Self::Unknown(s),
        }
    }
}

impl FromStr for Capability {
    type Err = Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self::from(s))
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for Capability {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Hash for Capability {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// A SMART capability set (SC-1.10): capabilities that together enable one use case, as the
/// SMART App Launch IG 2.2 "Conformance" page defines them.
///
/// Each set needs its listed capabilities and at least one of `client-public` or
/// `client-confidential-symmetric`. The IG lists `client-confidential-asymmetric` for these sets
/// as a MAY, so a server offering only asymmetric authentication does not meet them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CapabilitySet {
    /// Patient Access for Standalone Apps.
    PatientStandalone,
    /// Patient Access for EHR Launch (i.e. from a portal).
    PatientEhrLaunch,
    /// Clinician Access for Standalone.
    ClinicianStandalone,
    /// Clinician Access for EHR Launch.
    ClinicianEhrLaunch,
}

impl CapabilitySet {
    /// All the sets, in the IG's order.
    pub const ALL: [CapabilitySet; 4] = [
        Self::PatientStandalone,
        Self::PatientEhrLaunch,
        Self::ClinicianStandalone,
        Self::ClinicianEhrLaunch,
    ];

    /// The set's name in the IG.
    pub fn name(self) -> &'static str {
        match self {
            Self::PatientStandalone => "Patient Access for Standalone Apps",
            Self::PatientEhrLaunch => "Patient Access for EHR Launch",
            Self::ClinicianStandalone => "Clinician Access for Standalone",
            Self::ClinicianEhrLaunch => "Clinician Access for EHR Launch",
        }
    }

    /// The capabilities the set needs, besides one client type (see the type's docs).
    pub fn required(self) -> &'static [Capability] {
        const PATIENT_STANDALONE: &[Capability] = &[
            Capability::LaunchStandalone,
            Capability::ContextStandalonePatient,
            Capability::PermissionPatient,
        ];
        const PATIENT_EHR: &[Capability] = &[
            Capability::LaunchEhr,
            Capability::ContextEhrPatient,
            Capability::PermissionPatient,
        ];
        const CLINICIAN_STANDALONE: &[Capability] = &[
            Capability::LaunchStandalone,
            Capability::PermissionUser,
            Capability::PermissionPatient,
        ];
        const CLINICIAN_EHR: &[Capability] = &[
            Capability::LaunchEhr,
            Capability::ContextEhrPatient,
            Capability::ContextEhrEncounter,
            Capability::PermissionUser,
            Capability::PermissionPatient,
        ];
        match self {
            Self::PatientStandalone => PATIENT_STANDALONE,
            Self::PatientEhrLaunch => PATIENT_EHR,
            Self::ClinicianStandalone => CLINICIAN_STANDALONE,
            Self::ClinicianEhrLaunch => CLINICIAN_EHR,
        }
    }

    /// What `capabilities` lacks for this set: the missing required capabilities, plus
    /// `client-public` when neither client type is offered. Empty when the set is met.
    pub fn missing(self, capabilities: &[Capability]) -> Vec<Capability> {
        let mut missing: Vec<Capability> = self
            .required()
            .iter()
            .filter(|c| !capabilities.contains(c))
            .cloned()
            .collect();
        let client = capabilities.iter().any(|c| {
            matches!(
                c,
                Capability::ClientPublic | Capability::ClientConfidentialSymmetric
            )
        });
        if !client {
            missing.push(Capability::ClientPublic);
        }
        missing
    }

    /// Whether `capabilities` meets this set.
    pub fn is_met_by(self, capabilities: &[Capability]) -> bool {
        self.missing(capabilities).is_empty()
    }
}

impl fmt::Display for CapabilitySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn sc_1_8_every_defined_capability_round_trips() {
        let strings = [
            "launch-ehr",
            "launch-standalone",
            "authorize-post",
            "client-public",
            "client-confidential-symmetric",
            "client-confidential-asymmetric",
            "sso-openid-connect",
            "context-banner",
            "context-style",
            "context-ehr-patient",
            "context-ehr-encounter",
            "context-standalone-patient",
            "context-standalone-encounter",
            "permission-offline",
            "permission-online",
            "permission-patient",
            "permission-user",
            "permission-v1",
            "permission-v2",
            "smart-app-state",
        ];
        assert_eq!(strings.len(), Capability::KNOWN.len());
        for (s, known) in strings.iter().zip(Capability::KNOWN.iter()) {
            let c: Capability = s.parse().unwrap();
            assert_eq!(&c, known);
            assert!(!matches!(c, Capability::Unknown(_)), "{s}");
            assert!(c.is_known());
            assert_eq!(c.to_string(), *s);
            assert_eq!(Capability::from(s.to_string()), c);
        }
    }

    #[test]
    fn sc_1_9_unknown_capabilities_are_kept_verbatim() {
        for s in [
            "context-passthrough-banner",
            "http://sdo.example.org/example-new-capability",
            "Launch-EHR",
        ] {
            let c = Capability::from(s);
            assert_eq!(c, Capability::Unknown(s.to_owned()));
            assert!(!c.is_known());
            assert_eq!(c.to_string(), s);
        }
        // Equality and hashing go by the string, whatever the variant.
        let spelled = Capability::Unknown("launch-ehr".to_owned());
        assert_eq!(spelled, Capability::LaunchEhr);
        let set: HashSet<Capability> = [spelled, Capability::LaunchEhr].into_iter().collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn sc_1_10_capability_sets_follow_the_ig() {
        use Capability::*;
        let patient_standalone = [
            LaunchStandalone,
            ClientPublic,
            ContextStandalonePatient,
            PermissionPatient,
        ];
        assert!(CapabilitySet::PatientStandalone.is_met_by(&patient_standalone));
        assert!(!CapabilitySet::PatientEhrLaunch.is_met_by(&patient_standalone));
        assert!(!CapabilitySet::ClinicianStandalone.is_met_by(&patient_standalone));

        // Asymmetric authentication alone does not satisfy a set's client-type requirement.
        let asym_only = [
            LaunchStandalone,
            ClientConfidentialAsymmetric,
            ContextStandalonePatient,
            PermissionPatient,
        ];
        assert_eq!(
            CapabilitySet::PatientStandalone.missing(&asym_only),
            vec![ClientPublic]
        );

        let clinician_ehr = [
            LaunchEhr,
            ClientConfidentialSymmetric,
            ContextEhrPatient,
            ContextEhrEncounter,
            PermissionUser,
            PermissionPatient,
        ];
        assert!(CapabilitySet::ClinicianEhrLaunch.is_met_by(&clinician_ehr));
        assert!(CapabilitySet::PatientEhrLaunch.is_met_by(&clinician_ehr));
        assert_eq!(
            CapabilitySet::ClinicianEhrLaunch.missing(&clinician_ehr[..4]),
            vec![PermissionUser, PermissionPatient]
        );
        assert_eq!(
            CapabilitySet::ClinicianEhrLaunch.to_string(),
            "Clinician Access for EHR Launch"
        );
    }
}
