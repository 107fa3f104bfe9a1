//! Who may ask the board what: the `Host` it answers to, the origin a state-changing request
//! comes from, HTTP basic auth, the CSRF token of an action, and the headers every response
//! carries.

use crate::*;

/// `router` behind HTTP basic auth as `user` with `password` (compared in constant time).
pub(crate) fn with_basic_auth(router: Router, user: &str, password: &str) -> Router {
    use base64::Engine as _;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let expected = expected.clone();
            async move {
                let given = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok());
                if given.is_some_and(|g| same_secret(g, &expected)) {
                    next.run(request).await
                } else {
                    (
                        StatusCode::UNAUTHORIZED,
                        [(header::WWW_AUTHENTICATE, "Basic realm=\"snapline\"")],
                        "authentication required\n",
                    )
                        .into_response()
                }
            }
        },
    ))
}

/// Why a request is refused before any handler sees it, if it is: a `Host` the board does
/// not answer to, or a state-changing request from another origin.
pub(crate) fn refusal(
    method: &Method,
    headers: &HeaderMap,
    allowed_hosts: &[String],
) -> Option<PageError> {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return Some(PageError(
            StatusCode::BAD_REQUEST,
            "a request needs a Host header".into(),
        ));
    };
    if !host_allowed(host, allowed_hosts) {
        tracing::warn!(host = %jobs::status::printable(host), "board refused a request for another host");
        return Some(PageError(
            StatusCode::MISDIRECTED_REQUEST,
            "this board does not answer to that host name: add it to board.allowed_hosts".into(),
        ));
    }
    if matches!(*method, Method::GET | Method::HEAD) {
        return None;
    }
    // Browsers send Origin with every POST (Referer where a policy hides Origin); a client
    // that sends neither is not a browser a foreign page could drive.
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .map(|v| v.to_str().unwrap_or("(not text)"));
    match source {
        Some(source) if authority_of(source).is_none_or(|a| !a.eq_ignore_ascii_case(host)) => {
            tracing::warn!(
                origin = %jobs::status::printable(source),
                host = %jobs::status::printable(host),
                "board refused a cross-origin request"
            );
            Some(PageError(
                StatusCode::FORBIDDEN,
                "refused: the request comes from another site's page".into(),
            ))
        }
        _ => None,
    }
}

/// `host[:port]` of an absolute URL (`https://host:port/path`), `None` for `null` or
/// anything else.
pub(crate) fn authority_of(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    Some(&rest[..end]).filter(|a| !a.is_empty() && !a.contains('@'))
}

/// Whether the board answers to `host` (a `Host` header: name or address, maybe a port): an
/// IP address (a page an attacker serves is reached by name, never by the board's address),
/// `localhost` and names under it, or an allowed name.
pub(crate) fn host_allowed(host: &str, allowed_hosts: &[String]) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((address, _)) => return address.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host.as_str(),
        }
    };
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || allowed_hosts.iter().any(|allowed| {
            let allowed = allowed.trim().to_ascii_lowercase();
            allowed == host || allowed == name
        })
}

/// What every response says about itself: no framing (clickjacking of a confirmation),
/// scripts and styles from the board alone, no sniffing, no referrer beyond the board, and
/// no copy kept (pages carry the CSRF token).
pub(crate) async fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Compares two secrets in time that does not depend on where they differ.
pub(crate) fn same_secret(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// Refuses an action when the board is read-only.
pub(crate) fn actions_allowed(board: &Board) -> Result<(), PageError> {
    if board.allow_actions {
        Ok(())
    } else {
        Err(PageError(
            StatusCode::FORBIDDEN,
            "the board is read-only: start it with --allow-actions".into(),
        ))
    }
}

/// Refuses a form without this process's CSRF token.
pub(crate) fn check_csrf(board: &Board, form: &ActionForm) -> Result<(), PageError> {
    if same_secret(&form.csrf, &board.csrf) {
        Ok(())
    } else {
        Err(PageError(
            StatusCode::FORBIDDEN,
            "the form's token is not this board's (reload the page and confirm again)".into(),
        ))
    }
}
