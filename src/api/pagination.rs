//! List pagination shared by every list route: `?limit=` (1..100, default 50) and an opaque
//! `?cursor=`, answered as `{"data": [...], "nextCursor": "..." | null}`, newest first.
//!
//! Pages are keyset pages on `(created_at, id)`: stable under concurrent inserts (new rows
//! appear before the first page, never inside a later one) and as fast on page 1000 as on 1.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::db::Cursor;
use crate::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 100;

crate::json_schema! {
    /// `?limit=`.
    PageLimit => utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .minimum(Some(1))
        .maximum(Some(MAX_LIMIT))
        .default(Some(DEFAULT_LIMIT.into()))
        .description(Some(format!("Rows per page, 1 to {MAX_LIMIT} (default {DEFAULT_LIMIT}).")))
}

crate::json_schema! {
    /// `?cursor=`: a `nextCursor`.
    PageCursor => utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .pattern(Some(crate::db::CURSOR_PATTERN))
        .description(Some("The `nextCursor` of the previous page; empty for the first page."))
}

/// The query string of a list without filters: `?limit=&cursor=`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[param(value_type = Option<PageLimit>, inline)]
    pub limit: Option<i64>,
    #[param(value_type = Option<PageCursor>, inline)]
    pub cursor: Option<String>,
}

impl ListQuery {
    pub fn page(&self) -> Result<PageRequest, ApiError> {
        PageRequest::new(self.limit, self.cursor.as_deref())
    }
}

/// A validated page request.
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub limit: i64,
    pub after: Option<Cursor>,
}

impl PageRequest {
    pub fn new(limit: Option<i64>, cursor: Option<&str>) -> Result<PageRequest, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid_field(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let after = match cursor {
            None | Some("") => None,
            Some(text) => Some(Cursor::decode(text).ok_or_else(|| {
                ApiError::invalid_field("cursor", "is not a cursor of this list")
            })?),
        };
        Ok(PageRequest { limit, after })
    }

    /// How many rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch(&self) -> i64 {
        self.limit + 1
    }

    /// Builds the page from `fetch()` rows, converting each with `view`.
    pub fn page<R, V>(
        &self,
        mut rows: Vec<R>,
        key: impl Fn(&R) -> Cursor,
        view: impl FnMut(R) -> V,
    ) -> Page<V> {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        let next_cursor = if more { rows.last().map(|r| key(r).encode()) } else { None };
        Page { data: rows.into_iter().map(view).collect(), next_cursor }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_cursors_are_validated() {
        assert_eq!(PageRequest::new(None, None).unwrap().limit, 50);
        assert!(PageRequest::new(Some(0), None).is_err());
        assert!(PageRequest::new(Some(101), None).is_err());
        let error = PageRequest::new(None, Some("garbage!")).unwrap_err();
        assert_eq!(error.details()[0].field, "cursor");
        let cursor = Cursor { created_at: chrono::Utc::now(), id: "prj_1".into() };
        let request = PageRequest::new(Some(2), Some(&cursor.encode())).unwrap();
        let after = request.after.unwrap();
        assert_eq!(after.id, "prj_1");
        assert_eq!(after.created_at.timestamp_micros(), cursor.created_at.timestamp_micros());
    }

    #[test]
    fn pages_say_whether_more_follow() {
        let request = PageRequest::new(Some(2), None).unwrap();
        let now = chrono::Utc::now();
        let key = |id: &&str| Cursor { created_at: now, id: id.to_string() };
        let page = request.page(vec!["c", "b", "a"], key, |r| r);
        assert_eq!(page.data, ["c", "b"]);
        assert_eq!(Cursor::decode(page.next_cursor.as_deref().unwrap()).unwrap().id, "b");
        let page = request.page(vec!["b", "a"], key, |r| r);
        assert_eq!(page.next_cursor, None);
    }
}
