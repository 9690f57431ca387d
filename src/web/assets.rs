//! The dashboard's static files, compiled into the binary. Each is served under a name that
//! carries a hash of its content (`app.3f2a9c01b4de.css`), so browsers may keep it for a year:
//! a new release changes the name of whatever changed.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpResponse, web};

/// A static file: its served name, type and bytes.
pub struct Asset {
    pub name: String,
    content_type: &'static str,
    bytes: &'static [u8],
}

impl Asset {
    fn new(stem: &str, extension: &str, content_type: &'static str, bytes: &'static [u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        let hash: String = digest.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect();
        Asset { name: format!("{stem}.{hash}.{extension}"), content_type, bytes }
    }

    /// The path pages link to.
    pub fn path(&self) -> String {
        format!("/assets/{}", self.name)
    }
}

pub static STYLESHEET: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new("app", "css", "text/css; charset=utf-8", include_bytes!("assets/app.css"))
});

pub static SCRIPT: LazyLock<Asset> = LazyLock::new(|| {
    Asset::new("app", "js", "text/javascript; charset=utf-8", include_bytes!("assets/app.js"))
});

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/assets/{name}").get(serve));
}

async fn serve(name: web::Path<String>) -> HttpResponse {
    let asset = [&*STYLESHEET, &*SCRIPT].into_iter().find(|asset| asset.name == *name);
    match asset {
        Some(asset) => HttpResponse::Ok()
            .content_type(asset.content_type)
            .insert_header((header::CACHE_CONTROL, "public, max-age=31536000, immutable"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(asset.bytes),
        None => super::not_found(),
    }
}
