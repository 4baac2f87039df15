//! Who may see what: API keys, their scopes and the caller a request acts for.
//!
//! **Open mode** (`api_token` unset): no key is asked for and jobs have no owner.
//! **Closed mode** (`api_token` set): every `/api/` route but health, OpenAPI and the
//! docs page needs `Authorization: Bearer <key>`. `api_token` itself is the bootstrap
//! admin key; the others are made by `POST /api/keys`.
//!
//! A key reads `d20_<id>_<secret>`: the id (public, 32 hex digits) finds the stored
//! row, the whole key's SHA-256 digest is compared with the stored digest in constant
//! time. Only digests are stored: a key is shown once, when it is made.

use crate::ApiError;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The owner of the jobs the bootstrap key (`api_token`) makes.
pub const BOOTSTRAP_KEY_ID: &str = "admin";
/// Key names: 1 to this many characters.
pub const MAX_NAME_CHARS: usize = 64;
const KEY_PREFIX: &str = "d20_";
const ID_HEX: usize = 32;
const SECRET_HEX: usize = 64;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Tools, own jobs, own outputs, own events.
    Read,
    /// `POST /api/run`, cancel and retry of own jobs.
    Run,
    /// Everything: every job, keys, stats.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Run, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Run => "run",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s)
    }
}

/// A key's scopes: a non-empty set, kept sorted and without repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    pub fn admin() -> Scopes {
        Scopes(vec![Scope::Admin])
    }

    /// From the stored form (`read,run`); unknown names are dropped, so a row can never
    /// grant more than it names.
    pub fn from_stored(s: &str) -> Scopes {
        let mut scopes: Vec<Scope> = s.split(',').filter_map(Scope::parse).collect();
        scopes.sort();
        scopes.dedup();
        Scopes(scopes)
    }

    pub fn to_stored(&self) -> String {
        self.names().join(",")
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|s| s.as_str()).collect()
    }

    /// `admin` holds every scope.
    pub fn allows(&self, need: Scope) -> bool {
        self.0.contains(&need) || self.0.contains(&Scope::Admin)
    }
}

/// A key to make, validated (`POST /api/keys`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub name: String,
    pub scopes: Scopes,
    pub rate_limit_max: Option<u64>,
}

fn invalid(path: &str, message: String) -> ApiError {
    ApiError::Unprocessable {
        message: format!("{path}: {message}"),
        details: vec![serde_json::json!({"path": path, "message": message})],
    }
}

impl NewKey {
    /// `{"name": "...", "scopes": ["read", ...], "rate_limit_max": 50}`: 400 for a body
    /// that is not such an object, 422 for a field out of bounds.
    pub fn parse(body: &[u8]) -> Result<NewKey, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?;
        let Value::Object(fields) = value else {
            return Err(ApiError::BadRequest(
                "the body must be a JSON object: {\"name\": \"...\", \"scopes\": [\"read\"]}"
                    .into(),
            ));
        };
        if let Some(unknown) = fields
            .keys()
            .find(|k| !["name", "scopes", "rate_limit_max"].contains(&k.as_str()))
        {
            return Err(invalid(
                unknown,
                "unknown field (known: name, scopes, rate_limit_max)".into(),
            ));
        }
        let name = match fields.get("name") {
            Some(Value::String(n)) => n.trim().to_string(),
            _ => return Err(invalid("name", "a string is required".into())),
        };
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(invalid(
                "name",
                format!("1 to {MAX_NAME_CHARS} characters, not {chars}"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(invalid("name", "no control characters".into()));
        }
        let Some(Value::Array(list)) = fields.get("scopes") else {
            return Err(invalid(
                "scopes",
                "a list of scopes is required (read, run, admin)".into(),
            ));
        };
        let mut scopes = Vec::new();
        for item in list {
            match item.as_str().and_then(Scope::parse) {
                Some(scope) => scopes.push(scope),
                None => {
                    return Err(invalid(
                        "scopes",
                        format!("unknown scope {item} (known: read, run, admin)"),
                    ))
                }
            }
        }
        if scopes.is_empty() {
            return Err(invalid("scopes", "at least one scope".into()));
        }
        scopes.sort();
        scopes.dedup();
        let rate_limit_max = match fields.get("rate_limit_max") {
            None | Some(Value::Null) => None,
            Some(v) => match v.as_u64() {
                Some(n) if (1..=1_000_000_000).contains(&n) => Some(n),
                _ => {
                    return Err(invalid(
                        "rate_limit_max",
                        "a whole number from 1 to 1000000000".into(),
                    ))
                }
            },
        };
        Ok(NewKey {
            name,
            scopes: Scopes(scopes),
            rate_limit_max,
        })
    }
}

/// A freshly made key: its public id and the whole secret, shown once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeKey {
    pub id: String,
    pub key: String,
}

impl MadeKey {
    /// From 32 + 32 random bytes (the caller draws them: UUIDv4s on wasm).
    pub fn from_random(id: [u8; 16], secret: [u8; 32]) -> MadeKey {
        let id = hex(&id);
        let key = format!("{KEY_PREFIX}{id}_{}", hex(&secret));
        MadeKey { id, key }
    }

    pub fn digest(&self) -> String {
        digest(&self.key)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored form of a key: SHA-256 of the whole key, in hex.
pub fn digest(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

/// Whether `key`'s digest is `stored`, in time that does not depend on where they
/// differ.
pub fn digest_matches(key: &str, stored: &str) -> bool {
    digest(key).as_bytes().ct_eq(stored.as_bytes()).into()
}

/// Whether `presented` is the bootstrap key, in constant time.
pub fn is_bootstrap(presented: &str, api_token: &str) -> bool {
    presented.as_bytes().ct_eq(api_token.as_bytes()).into()
}

/// The id a well-formed key names; `None` for anything else.
pub fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let is_hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (is_hex(id, ID_HEX) && is_hex(secret, SECRET_HEX)).then_some(id)
}

/// The key in an `Authorization` header: `None` when there is no header; 401 for any
/// other scheme or an empty credential.
pub fn bearer(authorization: Option<&str>) -> Result<Option<&str>, ApiError> {
    let Some(header) = authorization else {
        return Ok(None);
    };
    let (scheme, credential) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized(
            "use Authorization: Bearer <key>".into(),
        ));
    }
    let credential = credential.trim();
    if credential.is_empty() {
        return Err(ApiError::Unauthorized(
            "Authorization: Bearer needs a key".into(),
        ));
    }
    Ok(Some(credential))
}

/// Whom a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Open mode, or a public route: no key.
    Anonymous,
    /// A valid key (the bootstrap key is `id` [`BOOTSTRAP_KEY_ID`], scope admin).
    Key {
        id: String,
        scopes: Scopes,
        rate_limit_max: Option<u64>,
    },
}

impl Caller {
    pub fn bootstrap() -> Caller {
        Caller::Key {
            id: BOOTSTRAP_KEY_ID.into(),
            scopes: Scopes::admin(),
            rate_limit_max: None,
        }
    }

    /// The owner of the jobs this caller makes (`None` in open mode).
    pub fn owner(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::Key { id, .. } => Some(id),
        }
    }

    /// Sees every job: open mode, or an admin key.
    pub fn sees_all(&self) -> bool {
        match self {
            Caller::Anonymous => true,
            Caller::Key { scopes, .. } => scopes.allows(Scope::Admin),
        }
    }

    /// Whether this caller may see a job owned by `owner`. Another key's job must look
    /// exactly like a missing one (404), so that its existence does not leak.
    pub fn may_see(&self, owner: Option<&str>) -> bool {
        self.sees_all() || (owner.is_some() && owner == self.owner())
    }

    /// `Ok` when this caller may see job `id` owned by `owner`; otherwise the very 404
    /// a missing job gets.
    pub fn check_sees(
        &self,
        owner: Option<&str>,
        id: &impl std::fmt::Display,
    ) -> Result<(), ApiError> {
        if self.may_see(owner) {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("no job with id {id}")))
        }
    }

    /// 403 unless the caller holds `need` (a call without a key never gets here in
    /// closed mode).
    pub fn require(&self, need: Scope) -> Result<(), ApiError> {
        match self {
            Caller::Key { scopes, .. } if !scopes.allows(need) => {
                Err(ApiError::Forbidden(format!(
                    "this key lacks the {:?} scope this route needs",
                    need.as_str()
                )))
            }
            _ => Ok(()),
        }
    }
}

/// A key as `GET /api/keys` lists it: never its secret or its digest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyView {
    pub id: String,
    pub name: String,
    pub scopes: Vec<&'static str>,
    pub rate_limit_max: Option<u64>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made() -> MadeKey {
        MadeKey::from_random([7; 16], [9; 32])
    }

    #[test]
    fn a_made_key_names_its_id_and_matches_only_its_own_digest() {
        let k = made();
        assert_eq!(key_id(&k.key), Some(k.id.as_str()));
        assert!(digest_matches(&k.key, &k.digest()));
        let mut short = k.key.clone();
        short.pop();
        assert!(!digest_matches(&short, &k.digest()));
        assert_eq!(key_id(&short), None, "one character missing is not a key");
        assert!(
            !k.digest().contains(&k.key[20..]),
            "the digest is not the key"
        );
    }

    #[test]
    fn malformed_keys_name_no_id() {
        for bad in [
            "",
            "d20_",
            "d20_x_y",
            "admin",
            &format!("d20_{}_{}", "A".repeat(32), "0".repeat(64)),
            &format!("d20_{}_{}", "0".repeat(32), "0".repeat(65)),
            "d20_ééééééééééééééééééééééééééééééé_0",
        ] {
            assert_eq!(key_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bearer_takes_only_the_bearer_scheme_with_a_credential() {
        assert_eq!(bearer(None).unwrap(), None);
        assert_eq!(bearer(Some("Bearer abc")).unwrap(), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")).unwrap(), Some("abc"));
        for bad in ["", "Bearer", "Bearer   ", "Basic YWxhZGRpbjpvcGVu", "abc"] {
            assert_eq!(bearer(Some(bad)).unwrap_err().status(), 401, "{bad:?}");
        }
    }

    #[test]
    fn scopes_allow_what_they_name_and_admin_allows_everything() {
        let read = Scopes::from_stored("read");
        assert!(read.allows(Scope::Read) && !read.allows(Scope::Run));
        assert!(!read.allows(Scope::Admin));
        let admin = Scopes::from_stored("admin");
        assert!(Scope::ALL.iter().all(|s| admin.allows(*s)));
        assert_eq!(
            Scopes::from_stored("run,read,run,bogus").to_stored(),
            "read,run"
        );
        assert_eq!(Scopes::from_stored("bogus").names(), Vec::<&str>::new());
    }

    #[test]
    fn callers_see_their_own_jobs_and_admins_see_all() {
        let alice = Caller::Key {
            id: "a".into(),
            scopes: Scopes::from_stored("read,run"),
            rate_limit_max: None,
        };
        assert!(alice.may_see(Some("a")));
        assert!(!alice.may_see(Some("b")));
        assert!(
            !alice.may_see(None),
            "an unowned (open mode) job is not hers"
        );
        assert!(Caller::bootstrap().may_see(Some("b")) && Caller::bootstrap().may_see(None));
        assert!(Caller::Anonymous.may_see(Some("b")));
        assert_eq!(alice.require(Scope::Admin).unwrap_err().status(), 403);
        assert!(alice.require(Scope::Run).is_ok());
        assert_eq!(Caller::bootstrap().owner(), Some(BOOTSTRAP_KEY_ID));
    }

    #[test]
    fn new_keys_are_validated() {
        let k = NewKey::parse(
            br#"{"name": " ci ", "scopes": ["run", "read", "run"], "rate_limit_max": 5}"#,
        )
        .unwrap();
        assert_eq!(k.name, "ci");
        assert_eq!(k.scopes.names(), ["read", "run"]);
        assert_eq!(k.rate_limit_max, Some(5));
        let none = NewKey::parse(br#"{"name": "x", "scopes": ["admin"], "rate_limit_max": null}"#);
        assert_eq!(none.unwrap().rate_limit_max, None);
        for (body, status) in [
            (&b"not json"[..], 400),
            (b"[]", 400),
            (br#"{"scopes": ["read"]}"#, 422),
            (br#"{"name": "", "scopes": ["read"]}"#, 422),
            (br#"{"name": "a\u0007", "scopes": ["read"]}"#, 422),
            (br#"{"name": 5, "scopes": ["read"]}"#, 422),
            (br#"{"name": "x"}"#, 422),
            (br#"{"name": "x", "scopes": []}"#, 422),
            (br#"{"name": "x", "scopes": ["root"]}"#, 422),
            (
                br#"{"name": "x", "scopes": ["read"], "rate_limit_max": 0}"#,
                422,
            ),
            (
                br#"{"name": "x", "scopes": ["read"], "rate_limit_max": -1}"#,
                422,
            ),
            (
                br#"{"name": "x", "scopes": ["read"], "rate_limit_max": 1.5}"#,
                422,
            ),
            (br#"{"name": "x", "scopes": ["read"], "owner": "me"}"#, 422),
        ] {
            let e = NewKey::parse(body).unwrap_err();
            assert_eq!(e.status(), status, "{}", String::from_utf8_lossy(body));
        }
        let long = format!(r#"{{"name": "{}", "scopes": ["read"]}}"#, "é".repeat(65));
        assert_eq!(NewKey::parse(long.as_bytes()).unwrap_err().status(), 422);
    }
}
