//! The body of a create or update request, validated field by field in the order
//! Healthchecks validates them, with its messages (`json validation error: grace is too small`).

use keepwatch_core::schedule::{Schedule, parse_tz};
use serde_json::{Map, Value};

use crate::error::ApiError;

/// Longest `tags` (Healthchecks' column is 500 characters) and `desc` (Healthchecks' has no
/// limit but its request size; ours keeps a runaway script from storing megabytes per check).
pub const MAX_TAGS: usize = 500;
pub const MAX_DESC: usize = 10_000;

pub const MIN_PERIOD: i64 = 60;
pub const MAX_PERIOD: i64 = 31_536_000;

#[derive(Debug, Default)]
pub struct Spec {
    pub channels: Option<String>,
    pub desc: Option<String>,
    pub failure_kw: Option<String>,
    pub filter_body: Option<bool>,
    pub filter_subject: Option<bool>,
    /// Classify HTTP pings by keywords in their body (Healthchecks 3.13).
    pub filter_http_body: Option<bool>,
    /// With `filter_http_body`: a body matching no keyword is a failure (else ignored).
    pub filter_default_fail: Option<bool>,
    pub grace: Option<i64>,
    pub manual_resume: Option<bool>,
    pub methods: Option<String>,
    pub name: Option<String>,
    pub schedule: Option<String>,
    pub slug: Option<String>,
    pub start_kw: Option<String>,
    pub subject: Option<String>,
    pub subject_fail: Option<String>,
    pub success_kw: Option<String>,
    pub tags: Option<String>,
    pub timeout: Option<i64>,
    pub tz: Option<String>,
    pub unique: Option<Vec<String>>,
    /// keepwatch: seconds a run may take before it is hung; `null` clears it.
    pub max_runtime: Option<Option<i64>>,
    /// keepwatch: the service the check belongs to; `null` clears it.
    pub service: Option<Option<String>>,
    /// keepwatch: a successful run whose volume is below this percent of the recent median
    /// raises an anomaly (0 turns it off).
    pub anomaly_volume_pct: Option<u32>,
    /// keepwatch: a successful run longer than this percent of the recent median raises an
    /// anomaly (0 turns it off).
    pub anomaly_duration_pct: Option<u32>,
    /// keepwatch: a successful run shorter than this percent of the recent median raises an
    /// anomaly (0, the default, turns it off).
    pub anomaly_short_pct: Option<u32>,
    /// keepwatch: regular expressions `keepwatch run` matches other processes' command lines
    /// with, as its `--watch` does.
    pub watch: Option<Vec<String>>,
    /// keepwatch: raise a low-urgency `never_reported` alert if the check has not pinged by
    /// its first expected time plus grace (Healthchecks leaves it `new` quietly).
    pub alert_if_never_pinged: Option<bool>,
    /// keepwatch, on create only: the new check's UUID instead of a random one, so checks
    /// moved from another Healthchecks-compatible server keep their ping URLs
    /// (`keepwatch import healthchecks`). Lower-case, hyphenated.
    pub uuid: Option<String>,
    /// keepwatch: send a low-urgency `late` notice to the check's channels when it enters
    /// its grace period (no alert, no page).
    pub notify_late: Option<bool>,
    /// keepwatch: the UUIDs of the checks this one depends on (validated against the
    /// project's checks when saved).
    pub depends_on: Option<Vec<String>>,
}

/// A check depends on at most this many others.
pub const MAX_DEPENDS_ON: usize = 20;

/// At most this many `watch` patterns, each at most this long.
pub const MAX_WATCH: usize = 10;
pub const MAX_WATCH_LEN: usize = 200;

fn watch_list(obj: &Map<String, Value>) -> Result<Option<Vec<String>>, ApiError> {
    let Some(value) = obj.get("watch") else {
        return Ok(None);
    };
    let Value::Array(items) = value else {
        return Err(invalid("watch is not an array of strings".into()));
    };
    if items.len() > MAX_WATCH {
        return Err(invalid(format!("watch has more than {MAX_WATCH} patterns")));
    }
    let mut patterns = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(pattern) = item else {
            return Err(invalid("watch is not an array of strings".into()));
        };
        if pattern.is_empty() || pattern.chars().count() > MAX_WATCH_LEN {
            return Err(invalid(format!(
                "watch patterns must be 1 to {MAX_WATCH_LEN} characters"
            )));
        }
        if let Err(e) = regex::Regex::new(pattern) {
            let first = e.to_string().lines().last().unwrap_or_default().to_string();
            return Err(invalid(format!(
                "watch pattern `{pattern}` is not a regular expression: {}",
                first.trim().trim_start_matches("error: ")
            )));
        }
        patterns.push(pattern.clone());
    }
    Ok(Some(patterns))
}

fn percent(
    obj: &Map<String, Value>,
    field: &str,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Option<u32>, ApiError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(0) => Ok(Some(0)),
            Some(v) if range.contains(&v) => Ok(Some(v as u32)),
            _ => Err(invalid(format!(
                "{field} must be 0 (off) or from {} to {}",
                range.start(),
                range.end()
            ))),
        },
        Some(_) => Err(invalid(format!("{field} is not a number"))),
    }
}

fn invalid(message: String) -> ApiError {
    ApiError::BadRequest(format!("json validation error: {message}"))
}

fn string(
    obj: &Map<String, Value>,
    field: &str,
    max: Option<usize>,
) -> Result<Option<String>, ApiError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::String(s)) => {
            if max.is_some_and(|max| s.chars().count() > max) {
                return Err(invalid(format!("{field} is too long")));
            }
            Ok(Some(s.clone()))
        }
        Some(_) => Err(invalid(format!("{field} is not a string"))),
    }
}

fn boolean(obj: &Map<String, Value>, field: &str) -> Result<Option<bool>, ApiError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(invalid(format!("{field} is not a boolean"))),
    }
}

fn seconds(obj: &Map<String, Value>, field: &str) -> Result<Option<i64>, ApiError> {
    let value = match obj.get(field) {
        None => return Ok(None),
        // Python's bool is an int: `true` is 1 second, which is too small.
        Some(Value::Bool(b)) => i64::from(*b),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => n.as_i64().unwrap_or(i64::MAX),
        Some(_) => return Err(invalid(format!("{field} is not a number"))),
    };
    if value < MIN_PERIOD {
        return Err(invalid(format!("{field} is too small")));
    }
    if value > MAX_PERIOD {
        return Err(invalid(format!("{field} is too large")));
    }
    Ok(Some(value))
}

impl Spec {
    pub fn parse(body: &Value) -> Result<Spec, ApiError> {
        let Some(obj) = body.as_object() else {
            return Err(invalid("value is not an object".into()));
        };
        // PostgreSQL cannot store a NUL in text: refuse it here, naming the field, instead
        // of failing the write with a 503.
        for (field, value) in obj {
            if let Some(at) = nul_path(value) {
                return Err(invalid(format!("{field}{at} contains a NUL character")));
            }
        }
        let mut spec = Spec {
            channels: string(obj, "channels", None)?,
            desc: string(obj, "desc", Some(MAX_DESC))?,
            failure_kw: string(obj, "failure_kw", Some(200))?,
            filter_body: boolean(obj, "filter_body")?,
            filter_subject: boolean(obj, "filter_subject")?,
            filter_http_body: boolean(obj, "filter_http_body")?,
            filter_default_fail: boolean(obj, "filter_default_fail")?,
            grace: seconds(obj, "grace")?,
            manual_resume: boolean(obj, "manual_resume")?,
            ..Spec::default()
        };
        spec.methods = string(obj, "methods", None)?;
        if spec
            .methods
            .as_deref()
            .is_some_and(|m| !m.is_empty() && m != "POST")
        {
            return Err(invalid("methods has unexpected value".into()));
        }
        spec.name = string(obj, "name", Some(100))?;
        spec.schedule = string(obj, "schedule", Some(100))?;
        spec.slug = string(obj, "slug", Some(100))?;
        if let Some(slug) = &spec.slug
            && !slug
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(invalid("slug does not match pattern".into()));
        }
        spec.start_kw = string(obj, "start_kw", Some(200))?;
        spec.subject = string(obj, "subject", Some(200))?;
        spec.subject_fail = string(obj, "subject_fail", Some(200))?;
        spec.success_kw = string(obj, "success_kw", Some(200))?;
        spec.tags = string(obj, "tags", Some(MAX_TAGS))?;
        spec.timeout = seconds(obj, "timeout")?;
        spec.tz = string(obj, "tz", None)?.map(|tz| canonical_tz(&tz).to_string());
        if let Some(tz) = &spec.tz
            && parse_tz(tz).is_err()
        {
            return Err(invalid("tz is not a valid timezone".into()));
        }
        spec.unique = match obj.get("unique") {
            None => None,
            Some(Value::Array(items)) => {
                let mut fields = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(f @ ("name" | "slug" | "tags" | "timeout" | "grace")) => {
                            fields.push(f.to_string())
                        }
                        _ => {
                            return Err(invalid("an item in 'unique' has unexpected value".into()));
                        }
                    }
                }
                Some(fields)
            }
            Some(_) => return Err(invalid("unique is not an array".into())),
        };
        if let Some(schedule) = &spec.schedule
            && let Err(e) = Schedule::parse(schedule, spec.tz.as_deref().unwrap_or("UTC"))
        {
            return Err(ApiError::BadSchedule {
                error:
                    "json validation error: schedule is not a valid cron or OnCalendar expression"
                        .into(),
                detail: e.to_string(),
            });
        }
        spec.max_runtime = match obj.get("max_runtime") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(s) if (1..=MAX_PERIOD).contains(&s) => Some(Some(s)),
                Some(s) if s < 1 => return Err(invalid("max_runtime is too small".into())),
                _ => return Err(invalid("max_runtime is too large".into())),
            },
            Some(_) => return Err(invalid("max_runtime is not a number".into())),
        };
        spec.service = match obj.get("service") {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::String(s)) if s.chars().count() <= 100 => Some(Some(s.clone())),
            Some(Value::String(_)) => return Err(invalid("service is too long".into())),
            Some(_) => return Err(invalid("service is not a string".into())),
        };
        spec.anomaly_volume_pct = percent(obj, "anomaly_volume_pct", 1..=100)?;
        spec.anomaly_duration_pct = percent(obj, "anomaly_duration_pct", 101..=100_000)?;
        spec.anomaly_short_pct = percent(obj, "anomaly_short_pct", 1..=99)?;
        spec.watch = watch_list(obj)?;
        spec.alert_if_never_pinged = boolean(obj, "alert_if_never_pinged")?;
        spec.uuid = match string(obj, "uuid", None)? {
            None => None,
            Some(text) => match uuid::Uuid::parse_str(&text) {
                Ok(uuid) if text.len() == 36 => Some(uuid.hyphenated().to_string()),
                _ => return Err(invalid("uuid is not a valid UUID".into())),
            },
        };
        spec.notify_late = boolean(obj, "notify_late")?;
        spec.depends_on = match obj.get("depends_on") {
            None => None,
            Some(Value::Array(items)) => {
                let mut uuids = Vec::with_capacity(items.len());
                for item in items {
                    let Some(text) = item.as_str() else {
                        return Err(invalid("depends_on is not an array of check UUIDs".into()));
                    };
                    match uuid::Uuid::parse_str(text) {
                        Ok(uuid) => uuids.push(uuid.to_string()),
                        Err(_) => {
                            return Err(invalid(format!(
                                "depends_on: `{text}` is not a check UUID"
                            )));
                        }
                    }
                }
                if uuids.len() > MAX_DEPENDS_ON {
                    return Err(invalid(format!(
                        "depends_on has more than {MAX_DEPENDS_ON} checks"
                    )));
                }
                uuids.sort_unstable();
                uuids.dedup();
                Some(uuids)
            }
            Some(_) => return Err(invalid("depends_on is not an array of check UUIDs".into())),
        };
        Ok(spec)
    }
}

/// A legacy time zone name replaced by its current canonical one, as Healthchecks stores
/// and answers it (`Europe/Kiev` → `Europe/Kyiv`): the tz database's backward links.
pub fn canonical_tz(name: &str) -> &str {
    LEGACY_ZONES
        .iter()
        .find(|(old, _)| *old == name)
        .map_or(name, |(_, new)| new)
}

/// The tz database's backward links for the legacy names Healthchecks replaces.
const LEGACY_ZONES: &[(&str, &str)] = &[
    ("Africa/Asmera", "Africa/Nairobi"),
    (
        "America/Argentina/ComodRivadavia",
        "America/Argentina/Catamarca",
    ),
    ("America/Buenos_Aires", "America/Argentina/Buenos_Aires"),
    ("America/Catamarca", "America/Argentina/Catamarca"),
    ("America/Cordoba", "America/Argentina/Cordoba"),
    ("America/Fort_Wayne", "America/Indiana/Indianapolis"),
    ("America/Godthab", "America/Nuuk"),
    ("America/Indianapolis", "America/Indiana/Indianapolis"),
    ("America/Jujuy", "America/Argentina/Jujuy"),
    ("America/Knox_IN", "America/Indiana/Knox"),
    ("America/Louisville", "America/Kentucky/Louisville"),
    ("America/Mendoza", "America/Argentina/Mendoza"),
    ("America/Rosario", "America/Argentina/Cordoba"),
    ("Antarctica/South_Pole", "Pacific/Auckland"),
    ("Asia/Ashkhabad", "Asia/Ashgabat"),
    ("Asia/Calcutta", "Asia/Kolkata"),
    ("Asia/Choibalsan", "Asia/Ulaanbaatar"),
    ("Asia/Chungking", "Asia/Shanghai"),
    ("Asia/Dacca", "Asia/Dhaka"),
    ("Asia/Katmandu", "Asia/Kathmandu"),
    ("Asia/Macao", "Asia/Macau"),
    ("Asia/Rangoon", "Asia/Yangon"),
    ("Asia/Saigon", "Asia/Ho_Chi_Minh"),
    ("Asia/Thimbu", "Asia/Thimphu"),
    ("Asia/Ujung_Pandang", "Asia/Makassar"),
    ("Asia/Ulan_Bator", "Asia/Ulaanbaatar"),
    ("Atlantic/Faeroe", "Atlantic/Faroe"),
    ("Australia/ACT", "Australia/Sydney"),
    ("Australia/LHI", "Australia/Lord_Howe"),
    ("Australia/NSW", "Australia/Sydney"),
    ("Australia/North", "Australia/Darwin"),
    ("Australia/Queensland", "Australia/Brisbane"),
    ("Australia/South", "Australia/Adelaide"),
    ("Australia/Tasmania", "Australia/Hobart"),
    ("Australia/Victoria", "Australia/Melbourne"),
    ("Australia/West", "Australia/Perth"),
    ("Brazil/Acre", "America/Rio_Branco"),
    ("Brazil/DeNoronha", "America/Noronha"),
    ("Brazil/East", "America/Sao_Paulo"),
    ("Brazil/West", "America/Manaus"),
    ("CET", "Europe/Brussels"),
    ("CST6CDT", "America/Chicago"),
    ("Canada/Atlantic", "America/Halifax"),
    ("Canada/Central", "America/Winnipeg"),
    ("Canada/Eastern", "America/Toronto"),
    ("Canada/Mountain", "America/Edmonton"),
    ("Canada/Newfoundland", "America/St_Johns"),
    ("Canada/Pacific", "America/Vancouver"),
    ("Canada/Saskatchewan", "America/Regina"),
    ("Canada/Yukon", "America/Whitehorse"),
    ("Chile/Continental", "America/Santiago"),
    ("Chile/EasterIsland", "Pacific/Easter"),
    ("Cuba", "America/Havana"),
    ("EET", "Europe/Athens"),
    ("EST", "America/Panama"),
    ("EST5EDT", "America/New_York"),
    ("Egypt", "Africa/Cairo"),
    ("Eire", "Europe/Dublin"),
    ("Europe/Kiev", "Europe/Kyiv"),
    ("Europe/Uzhgorod", "Europe/Kyiv"),
    ("Europe/Zaporozhye", "Europe/Kyiv"),
    ("GB", "Europe/London"),
    ("GB-Eire", "Europe/London"),
    ("GMT+0", "Etc/GMT"),
    ("GMT-0", "Etc/GMT"),
    ("GMT0", "Etc/GMT"),
    ("Greenwich", "Etc/GMT"),
    ("HST", "Pacific/Honolulu"),
    ("Hongkong", "Asia/Hong_Kong"),
    ("Iceland", "Africa/Abidjan"),
    ("Iran", "Asia/Tehran"),
    ("Israel", "Asia/Jerusalem"),
    ("Jamaica", "America/Jamaica"),
    ("Japan", "Asia/Tokyo"),
    ("Kwajalein", "Pacific/Kwajalein"),
    ("Libya", "Africa/Tripoli"),
    ("MET", "Europe/Brussels"),
    ("MST", "America/Phoenix"),
    ("MST7MDT", "America/Denver"),
    ("Mexico/BajaNorte", "America/Tijuana"),
    ("Mexico/BajaSur", "America/Mazatlan"),
    ("Mexico/General", "America/Mexico_City"),
    ("NZ", "Pacific/Auckland"),
    ("NZ-CHAT", "Pacific/Chatham"),
    ("Navajo", "America/Denver"),
    ("PRC", "Asia/Shanghai"),
    ("PST8PDT", "America/Los_Angeles"),
    ("Pacific/Enderbury", "Pacific/Kanton"),
    ("Pacific/Ponape", "Pacific/Guadalcanal"),
    ("Pacific/Truk", "Pacific/Port_Moresby"),
    ("Poland", "Europe/Warsaw"),
    ("Portugal", "Europe/Lisbon"),
    ("ROC", "Asia/Taipei"),
    ("ROK", "Asia/Seoul"),
    ("Singapore", "Asia/Singapore"),
    ("Turkey", "Europe/Istanbul"),
    ("UCT", "Etc/UTC"),
    ("US/Alaska", "America/Anchorage"),
    ("US/Aleutian", "America/Adak"),
    ("US/Arizona", "America/Phoenix"),
    ("US/Central", "America/Chicago"),
    ("US/East-Indiana", "America/Indiana/Indianapolis"),
    ("US/Eastern", "America/New_York"),
    ("US/Hawaii", "Pacific/Honolulu"),
    ("US/Indiana-Starke", "America/Indiana/Knox"),
    ("US/Michigan", "America/Detroit"),
    ("US/Mountain", "America/Denver"),
    ("US/Pacific", "America/Los_Angeles"),
    ("US/Samoa", "Pacific/Pago_Pago"),
    ("Universal", "Etc/UTC"),
    ("W-SU", "Europe/Moscow"),
    ("WET", "Europe/Lisbon"),
    ("Zulu", "Etc/UTC"),
];

/// Where in `value` a string (or an object key) holds a NUL character, as a path below it
/// (`""` for `value` itself, `.summary`, `[2].labels.job`); `None` if nowhere. Text columns
/// on PostgreSQL cannot hold NUL, so every JSON input is checked with this at the edge.
pub fn nul_path(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => s.contains('\0').then(String::new),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item).map(|rest| format!("[{i}]{rest}"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                return Some(format!(".{}", key.replace('\0', "\\0")));
            }
            nul_path(item).map(|rest| format!(".{key}{rest}"))
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::nul_path;

    #[test]
    fn nul_path_names_where_the_nul_is() {
        assert_eq!(nul_path(&json!("a\0b")), Some(String::new()));
        assert_eq!(
            nul_path(&json!({"a": [1, {"b": "\0"}]})),
            Some(".a[1].b".into())
        );
        assert_eq!(nul_path(&json!({"a\0": 1})), Some(".a\\0".into()));
        assert_eq!(nul_path(&json!({"a": ["x", 2, null]})), None);
    }
}
