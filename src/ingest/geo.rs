//! IP address → country (and region and city where the database has them).
//!
//! Footfall ships DB-IP's "IP to Country Lite" database (CC BY 4.0, attribution:
//! "IP Geolocation by DB-IP", https://db-ip.com) inside the binary so countries work out of
//! the box. `--geoip PATH` swaps in any MaxMind-format file (GeoLite2 City, DB-IP City).

use anyhow::Context;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

static EMBEDDED_DBIP_COUNTRY: &[u8] = include_bytes!("../../assets/geoip/dbip-country.mmdb");

pub const ATTRIBUTION_HTML: &str = r#"<a href="https://db-ip.com">IP Geolocation by DB-IP</a>"#;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    /// ISO 3166-1 alpha-2, e.g. `DE`.
    pub country: String,
    /// ISO 3166-2, e.g. `DE-BE`.
    pub region: String,
    /// English name of the region, e.g. `Berlin`.
    pub region_name: String,
    pub city: String,
}

enum Source {
    Embedded(maxminddb::Reader<&'static [u8]>),
    File(maxminddb::Reader<Vec<u8>>),
}

pub struct GeoIp {
    reader: Source,
    pub description: String,
}

// Both record layouts: ip-location-db's flat `country_code`, and MaxMind's nested one.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country_code: Option<&'a str>,
    #[serde(borrow)]
    country: Option<Country<'a>>,
    #[serde(borrow)]
    subdivisions: Option<Vec<Subdivision<'a>>>,
    #[serde(borrow)]
    city: Option<City<'a>>,
}
#[derive(Deserialize)]
struct Country<'a> {
    iso_code: Option<&'a str>,
}
#[derive(Deserialize)]
struct Subdivision<'a> {
    iso_code: Option<&'a str>,
    #[serde(borrow)]
    names: Option<BTreeMap<&'a str, &'a str>>,
}
#[derive(Deserialize)]
struct City<'a> {
    #[serde(borrow)]
    names: Option<BTreeMap<&'a str, &'a str>>,
}

impl GeoIp {
    pub fn embedded() -> GeoIp {
        let reader = maxminddb::Reader::from_source(EMBEDDED_DBIP_COUNTRY).expect("the embedded GeoIP database is valid");
        GeoIp { reader: Source::Embedded(reader), description: "DB-IP IP to Country Lite (embedded)".into() }
    }

    pub fn open(path: &Path) -> anyhow::Result<GeoIp> {
        let bytes = std::fs::read(path).with_context(|| format!("while reading the GeoIP database {}", path.display()))?;
        let reader = maxminddb::Reader::from_source(bytes)
            .map_err(|e| anyhow::anyhow!("{} is not a MaxMind-format database: {e}", path.display()))?;
        let description = format!("{} ({})", reader.metadata.database_type, path.display());
        Ok(GeoIp { reader: Source::File(reader), description })
    }

    pub fn lookup(&self, ip: IpAddr) -> Location {
        match &self.reader {
            Source::Embedded(r) => r.lookup::<Record>(ip).ok().map(to_location),
            Source::File(r) => r.lookup::<Record>(ip).ok().map(to_location),
        }
        .unwrap_or_default()
    }
}

fn to_location(r: Record<'_>) -> Location {
    let country = r
        .country_code
        .or_else(|| r.country.as_ref().and_then(|c| c.iso_code))
        .unwrap_or("")
        .to_ascii_uppercase();
    // "ZZ" is DB-IP's code for unassigned space; treat it as unknown.
    let country = if country.len() == 2 && country != "ZZ" { country } else { String::new() };
    let subdivision = r.subdivisions.as_ref().and_then(|s| s.first());
    let region = subdivision
        .and_then(|s| s.iso_code)
        .filter(|_| !country.is_empty())
        .map(|code| format!("{country}-{code}"))
        .unwrap_or_default();
    let region_name = subdivision
        .filter(|_| !region.is_empty())
        .and_then(|s| s.names.as_ref())
        .and_then(|n| n.get("en").map(|s| s.to_string()))
        .unwrap_or_default();
    let city = r
        .city
        .and_then(|c| c.names)
        .and_then(|n| n.get("en").map(|s| s.to_string()))
        .unwrap_or_default();
    Location { country, region, region_name, city }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_database_knows_countries() {
        let geo = GeoIp::embedded();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(geo.lookup(ip("8.8.8.8")).country, "US");
        assert_eq!(geo.lookup(ip("81.2.69.142")).country, "GB");
        assert_eq!(geo.lookup(ip("2a00:1450::1")).country, "PL");
        assert_eq!(geo.lookup(ip("127.0.0.1")), Location::default());
        assert_eq!(geo.lookup(ip("10.1.2.3")), Location::default());
    }

    #[test]
    fn city_databases_give_regions_and_cities() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/city-test.mmdb");
        let geo = GeoIp::open(&path).unwrap();
        assert!(geo.description.starts_with("Footfall-Test-City"));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let loc = |country: &str, region: &str, city: &str| Location { country: country.into(), region: region.into(), city: city.into(), ..Default::default() };
        assert_eq!(geo.lookup(ip("198.51.100.9")), Location { region_name: "Berlin".into(), ..loc("DE", "DE-BE", "Berlin") });
        assert_eq!(geo.lookup(ip("2001:db8:1::5")), loc("FR", "", "Lyon"));
        assert_eq!(geo.lookup(ip("8.8.8.8")), Location::default());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not.mmdb");
        std::fs::write(&path, b"hello").unwrap();
        let e = GeoIp::open(&path).err().unwrap();
        assert!(format!("{e:#}").contains("is not a MaxMind-format database"));
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let e = GeoIp::open(Path::new("/nonexistent/geo.mmdb")).err().unwrap();
        assert!(format!("{e:#}").contains("/nonexistent/geo.mmdb"));
    }
}
