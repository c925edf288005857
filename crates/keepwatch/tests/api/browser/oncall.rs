//! On-call and the drill in the browser: cover a shift in two clicks and see the calendar
//! and `keepwatch oncall` change; run a drill and see its timeline, then the week's heat map.

use keepwatch_core::user::Role;

use super::harness::{Browser, Viewport};
use crate::cli::keepwatch_async;
use crate::helpers::spawn_app;
use crate::ui::{PASSWORD, rotation_file, user};

/// What `keepwatch oncall --server` prints for the app.
async fn oncall_cli(app: &crate::helpers::TestApp) -> String {
    let out = keepwatch_async(&["oncall", "--server", &app.address], Some(&app.api_key)).await;
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

async fn cover_a_shift(viewport: Viewport) {
    let app = spawn_app().await;
    app.apply_oncall_config(&rotation_file()).await;
    let email = user(
        &app,
        "alice@example.com",
        "default",
        Role::Responder,
        "alice",
    )
    .await;
    let browser = Browser::start(&app, viewport).await;
    browser.sign_in(&email, PASSWORD).await;
    browser.goto("/ui/p/default/oncall/").await;
    browser.find_text("p.now", "On call now: bob").await;
    assert!(oncall_cli(&app).await.contains("bob"));
    // Click one: who covers (alice is preselected, being the signed-in person); two: Cover.
    browser
        .find("table.shifts select")
        .await
        .select_by_value("alice")
        .await
        .unwrap();
    browser
        .find("table.shifts button")
        .await
        .click()
        .await
        .unwrap();
    browser.find_text("p.now", "On call now: alice").await;
    browser
        .find_text("ul.plain li", "alice covers for bob")
        .await;
    let first_shift = browser
        .find("table.shifts tbody tr")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        first_shift.contains("alice") && first_shift.contains("override"),
        "{first_shift}"
    );
    let cli = oncall_cli(&app).await;
    assert!(
        cli.lines().next().unwrap_or_default().contains("alice"),
        "keepwatch oncall follows the override: {cli}"
    );
    browser.screenshot("oncall").await;
    browser.close().await;
}

#[tokio::test]
async fn browser_an_override_in_two_clicks_changes_the_calendar_and_keepwatch_oncall() {
    cover_a_shift(Viewport::Desktop).await;
}

#[tokio::test]
async fn browser_phone_an_override_in_two_clicks_changes_the_calendar_and_keepwatch_oncall() {
    cover_a_shift(Viewport::Phone).await;
}

async fn drill(viewport: Viewport) {
    let app = spawn_app().await;
    app.apply_oncall_config(&rotation_file()).await;
    let email = user(&app, "vic@example.com", "default", Role::Viewer, "").await;
    let browser = Browser::start(&app, viewport).await;
    browser.sign_in(&email, PASSWORD).await;
    browser.goto("/ui/p/default/drill").await;
    browser
        .find("#service")
        .await
        .select_by_value("billing")
        .await
        .unwrap();
    browser.type_into("#at", "12052026\t0200AM").await;
    browser.find("#tz").await.clear().await.unwrap();
    browser.type_into("#tz", "America/Denver").await;
    browser.find("button.primary").await.click().await.unwrap();
    browser
        .find_text("section p", "First high-urgency page:")
        .await;
    let timeline = browser.find("ol.log").await.text().await.unwrap();
    // 2026-12-05 09:00 UTC starts an even day of the daily rotation from 2026-11-01: alice.
    assert!(
        timeline.contains("notify alice by email"),
        "alice is on call then: {timeline}"
    );
    browser.screenshot("drill").await;
    browser
        .find("button[value=week]")
        .await
        .click()
        .await
        .unwrap();
    browser.find("table.heat").await;
    let rows = browser
        .client
        .find_all(fantoccini::Locator::Css("table.heat tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 7, "a row a day");
    browser.screenshot("drill-week").await;
    browser.close().await;
}

#[tokio::test]
async fn browser_a_drill_shows_its_timeline_and_the_week_heat_map() {
    drill(Viewport::Desktop).await;
}

#[tokio::test]
async fn browser_phone_a_drill_shows_its_timeline_and_the_week_heat_map() {
    drill(Viewport::Phone).await;
}
