//! Web UI users' roles in a project: what each may do.

crate::text_enum::text_enum! {
    /// A user's role in one project. A user of one project sees nothing of another.
    pub enum Role {
        /// Everything a responder does, plus checks' settings and users.
        Admin = "admin",
        /// Acknowledges, resolves, notes, overrides, incident updates.
        Responder = "responder",
        /// Reads only.
        Viewer = "viewer",
    }
}

impl Role {
    /// Acknowledge and resolve alerts, write notes, create overrides, post incident updates.
    pub fn can_respond(self) -> bool {
        matches!(self, Role::Admin | Role::Responder)
    }

    /// Create, edit, pause and delete checks.
    pub fn can_admin(self) -> bool {
        self == Role::Admin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_in_order() {
        assert!(Role::Admin.can_admin() && Role::Admin.can_respond());
        assert!(!Role::Responder.can_admin() && Role::Responder.can_respond());
        assert!(!Role::Viewer.can_admin() && !Role::Viewer.can_respond());
        assert_eq!(Role::parse("viewer"), Some(Role::Viewer));
        assert_eq!(Role::parse("owner"), None);
    }
}
