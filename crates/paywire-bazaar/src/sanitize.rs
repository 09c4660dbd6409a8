//! The specification's soft-drop rules for service metadata and route
//! templates: clients echo these fields, so a hostile client could try to
//! poison the catalog with them. A field that breaks its rule is dropped;
//! the rest of the metadata is kept.

use paywire_core::ResourceInfo;
use percent_encoding::percent_decode_str;

const MAX_LABEL: usize = 32;
const MAX_TAGS: usize = 5;
const MAX_ICON_URL: usize = 2048;

fn printable_ascii(text: &str) -> bool {
    text.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// A non-empty string of printable ASCII, at most 32 characters.
pub fn is_valid_service_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_LABEL && printable_ascii(name)
}

/// The first five valid tags (non-empty, printable ASCII, ≤ 32 characters),
/// deduplicated case-insensitively with the first occurrence kept.
pub fn sanitize_tags<S: AsRef<str>>(tags: &[S]) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for tag in tags.iter().map(AsRef::as_ref) {
        if kept.len() == MAX_TAGS {
            break;
        }
        let valid = !tag.is_empty() && tag.len() <= MAX_LABEL && printable_ascii(tag);
        if valid && !kept.iter().any(|k| k.eq_ignore_ascii_case(tag)) {
            kept.push(tag.to_owned());
        }
    }
    kept
}

const LOOPBACK_NAMES: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "ip6-localhost",
    "ip6-loopback",
];

/// An absolute `http`/`https` URL of at most 2048 characters, without
/// userinfo or control characters, whose host (percent-decoded, then
/// IDN-normalized) is a name: not an IP literal in any notation, not a
/// loopback name.
pub fn is_valid_icon_url(text: &str) -> bool {
    if text.is_empty() || text.len() > MAX_ICON_URL || text.chars().any(char::is_control) {
        return false;
    }
    let lower = text.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return false;
    }
    let Ok(url) = url::Url::parse(text) else {
        return false;
    };
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return false;
    }
    // The WHATWG parser already turns decimal, hex and octal IPv4 spellings
    // into `Host::Ipv4`; the name checks below are the specification's own,
    // applied to the decoded, normalized host.
    let host = match url.host() {
        Some(url::Host::Domain(host)) => host.to_owned(),
        _ => return false,
    };
    let Ok(decoded) = percent_decode_str(&host).decode_utf8() else {
        return false;
    };
    let host = decoded.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty()
        || LOOPBACK_NAMES.contains(&host.as_str())
        || host.parse::<std::net::IpAddr>().is_ok()
        || host.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        return false;
    }
    let hex = host
        .strip_prefix("0x")
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_hexdigit()));
    !hex
}

/// A route template usable as a catalog key: starts with `/`, only path
/// characters and `:param` identifiers, and, after percent-decoding, no `..`
/// and no `://`.
pub fn is_valid_route_template(template: &str) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_/:.-~%".contains(&b);
    if !template.starts_with('/') || template.len() < 2 || !template.bytes().all(allowed) {
        return false;
    }
    let decoded = percent_decode_str(template).decode_utf8_lossy();
    !decoded.contains("..") && !decoded.contains("://")
}

/// A copy of `resource` with every service-metadata field that breaks its
/// rule dropped (tags are filtered entry by entry).
pub fn sanitize_resource(resource: &ResourceInfo) -> ResourceInfo {
    let mut clean = resource.clone();
    clean.service_name = resource
        .service_name
        .clone()
        .filter(|name| is_valid_service_name(name));
    clean.tags = resource
        .tags
        .as_deref()
        .map(sanitize_tags)
        .filter(|tags| !tags.is_empty());
    clean.icon_url = resource
        .icon_url
        .clone()
        .filter(|url| is_valid_icon_url(url));
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert!(is_valid_service_name("Example Weather"));
        assert!(is_valid_service_name(&"a".repeat(32)));
        assert!(!is_valid_service_name(&"a".repeat(33)));
        assert!(!is_valid_service_name(""));
        assert!(!is_valid_service_name("Météo"));
        assert!(!is_valid_service_name("tab\there"));
        assert!(!is_valid_service_name("nul\u{0}"));
    }

    #[test]
    fn tags_are_filtered_deduplicated_and_capped() {
        let tags = [
            "weather",
            "Weather",
            "",
            "ünïcode",
            "forecast",
            &"x".repeat(33),
            "a",
            "b",
            "c",
            "d",
        ];
        assert_eq!(sanitize_tags(&tags), ["weather", "forecast", "a", "b", "c"]);
    }

    #[test]
    fn icon_urls() {
        for good in [
            "https://api.example.com/icon.png",
            "http://cdn.example.org/i.svg?v=2",
            "https://bücher.example/icon.png",
        ] {
            assert!(is_valid_icon_url(good), "{good}");
        }
        for bad in [
            "ftp://example.com/icon.png",
            "data:image/png;base64,AAAA",
            "file:///etc/passwd",
            "javascript:alert(1)",
            "/relative/icon.png",
            "https://user@example.com/icon.png",
            "https://user:pw@example.com/icon.png",
            "http://127.0.0.1/icon.png",
            "http://[::1]/icon.png",
            "http://2130706433/icon.png",
            "http://0x7f000001/icon.png",
            "http://0177.0.0.1/icon.png",
            "http://localhost/icon.png",
            "http://LOCALHOST./icon.png",
            "http://ip6-loopback/icon.png",
            "http://%6c%6f%63%61%6c%68%6f%73%74/icon.png",
            "http://%31%32%37.0.0.1/icon.png",
            "https://example.com/\u{7}icon.png",
        ] {
            assert!(!is_valid_icon_url(bad), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert!(!is_valid_icon_url(&long));
    }

    #[test]
    fn route_templates() {
        for good in [
            "/users/:userId",
            "/weather/:country/:city",
            "/a-b_c.d~e/%20",
        ] {
            assert!(is_valid_route_template(good), "{good}");
        }
        for bad in [
            "",
            "/",
            "users/:id",
            "/users/../admin",
            "/users/%2e%2e/admin",
            "/redirect/http://evil.com",
            "/x/http%3A%2F%2Fevil.com",
            "/sp ace",
            "/q?x=1",
        ] {
            assert!(!is_valid_route_template(bad), "{bad}");
        }
    }

    #[test]
    fn resource_keeps_valid_fields_and_drops_the_rest() {
        let mut resource = ResourceInfo::new("https://api.example.com/weather");
        resource.description = Some("Weather".into());
        resource.service_name = Some("x".repeat(40));
        resource.tags = Some(vec!["weather".into(), "WEATHER".into()]);
        resource.icon_url = Some("http://localhost/icon.png".into());
        let clean = sanitize_resource(&resource);
        assert_eq!(clean.service_name, None);
        assert_eq!(clean.tags, Some(vec!["weather".to_owned()]));
        assert_eq!(clean.icon_url, None);
        assert_eq!(clean.description.as_deref(), Some("Weather"));
    }
}
