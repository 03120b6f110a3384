//! Who may do what to a resource: pure rules over the [`Principal`] and the resource's
//! `identity` and `scores_from`, so they are unit-tested without servers.

use crate::auth::{Principal, Role};
use crate::error::ApiError;
use std::collections::HashMap;
use tally_schema::email::Contact;
use tally_schema::ids::{GroupId, TeamId, UserId};
use tally_schema::resources::{Identity, ScoresFrom};

fn token_required(field: &str) -> ApiError {
    ApiError::Unauthorized {
        code: "token_required",
        message: format!(
            "this resource takes '{field}' from a user token: 'Authorization: Bearer <token>'"
        ),
    }
}

fn forbidden(code: &'static str, message: String) -> ApiError {
    ApiError::Forbidden { code, message }
}

/// May `principal` act as `member` (a voter, session or user named in `field`)? Anonymous
/// resources take the body's word; the others need that user's token, or a site or admin key
/// that vouches for the user it names.
pub fn act_as(
    principal: &Principal,
    identity: Identity,
    field: &str,
    member: &str,
) -> Result<(), ApiError> {
    if identity == Identity::Anonymous {
        return Ok(());
    }
    match principal {
        Principal::Anonymous => Err(token_required(field)),
        Principal::User(user) if user.id.as_str() == member => Ok(()),
        Principal::User(user) => Err(forbidden(
            "not_your_identity",
            format!("the token is for '{}', not '{member}' ({field})", user.id),
        )),
        Principal::Key { role, .. } if role.allows(Role::Site) => Ok(()),
        Principal::Key { .. } => Err(forbidden(
            "insufficient_role",
            "acting for a user needs their token, or a key with the site role".into(),
        )),
    }
}

/// Where to email `user`, registering: what a site key vouches for (the body's `email` and
/// `time_zone`), or their own token's claims. Anyone else naming an address is refused: an
/// address is someone's, and mail to it must be theirs to ask for.
pub fn contact(
    principal: &Principal,
    user: &UserId,
    email: Option<String>,
    time_zone: Option<String>,
) -> Result<Option<Contact>, ApiError> {
    match principal {
        Principal::Key { role, .. } if role.allows(Role::Site) => {
            Ok(email.map(|email| Contact { email, time_zone }))
        }
        _ if email.is_some() || time_zone.is_some() => Err(forbidden(
            "address_not_vouched",
            "only a site key names an address (email, time_zone); a user token carries its own"
                .into(),
        )),
        Principal::User(u) if &u.id == user => Ok(u.email.clone().map(|email| Contact {
            email,
            time_zone: u.time_zone.clone(),
        })),
        _ => Ok(None),
    }
}

/// May `principal` read `user`'s registration? As [`act_as`], and viewer keys may read too.
pub fn read_as(principal: &Principal, identity: Identity, user: &UserId) -> Result<(), ApiError> {
    match principal {
        Principal::Key { role, .. } if role.allows(Role::Viewer) => Ok(()),
        _ => act_as(principal, identity, "user", user.as_str()),
    }
}

/// The priority group a registration may carry. A site or admin key vouches for the group it
/// names (or the list's). Otherwise the group is granted by the user's token (its group
/// claim) or by the operator's membership list, and a body group must agree with it
/// (`403 group_not_granted`). Only an anonymous tournament without a list takes the body's
/// group as declared.
pub fn group(
    principal: &Principal,
    identity: Identity,
    listed: Option<&HashMap<String, GroupId>>,
    user: &UserId,
    asked: Option<GroupId>,
) -> Result<Option<GroupId>, ApiError> {
    let on_list = listed.and_then(|l| l.get(user.as_str())).cloned();
    if let Principal::Key { role, .. } = principal
        && role.allows(Role::Site)
    {
        return Ok(asked.or(on_list));
    }
    if identity == Identity::Anonymous && listed.is_none() {
        return Ok(asked);
    }
    let granted = match principal {
        Principal::User(u) => u.group.clone().or(on_list),
        _ => on_list,
    };
    match (asked, granted) {
        (None, granted) => Ok(granted),
        (Some(a), Some(g)) if a == g => Ok(Some(a)),
        (Some(a), _) => Err(forbidden(
            "group_not_granted",
            format!("'{user}' is not granted the group '{a}'"),
        )),
    }
}

/// May `principal` post a score for `team`?
pub fn score(principal: &Principal, from: ScoresFrom, team: &TeamId) -> Result<(), ApiError> {
    let keyed =
        |p: &Principal| matches!(p, Principal::Key { role, .. } if role.allows(Role::Scorekeeper));
    match from {
        ScoresFrom::Anyone => Ok(()),
        _ if keyed(principal) => Ok(()),
        ScoresFrom::TeamToken => match principal {
            Principal::User(u) if u.team.as_ref() == Some(team) => Ok(()),
            Principal::Anonymous => Err(token_required("team")),
            _ => Err(forbidden(
                "not_your_team",
                format!("scores for '{team}' need a scorekeeper key or a token of that team"),
            )),
        },
        ScoresFrom::Keys => match principal {
            Principal::Anonymous => Err(ApiError::Unauthorized {
                code: "unauthorized",
                message: "this tournament takes scores from scorekeeper keys".into(),
            }),
            _ => Err(forbidden(
                "insufficient_role",
                "this tournament takes scores from scorekeeper keys".into(),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::User;

    fn user(id: &str, group: Option<&str>, team: Option<&str>) -> Principal {
        Principal::User(User {
            id: id.try_into().unwrap(),
            group: group.map(|g| g.try_into().unwrap()),
            team: team.map(|t| t.try_into().unwrap()),
            email: None,
            time_zone: None,
        })
    }

    fn key(role: Role) -> Principal {
        Principal::Key {
            role,
            id: "k".into(),
        }
    }

    fn code(r: Result<impl std::fmt::Debug, ApiError>) -> &'static str {
        r.unwrap_err().body().code
    }

    fn u(id: &str) -> UserId {
        UserId::try_from(id).unwrap()
    }

    #[test]
    fn anonymous_resources_take_the_body_at_its_word() {
        let a = Identity::Anonymous;
        assert!(act_as(&Principal::Anonymous, a, "voter", "v1").is_ok());
        assert!(act_as(&user("u2", None, None), a, "user", "u1").is_ok());
        let g = Some(GroupId::try_from("vip").unwrap());
        assert_eq!(
            group(&Principal::Anonymous, a, None, &u("u1"), g.clone()).unwrap(),
            g
        );
    }

    #[test]
    fn a_membership_list_grants_groups_even_without_identity() {
        let vip = || Some(GroupId::try_from("vip").unwrap());
        let list = HashMap::from([("u1".to_owned(), GroupId::try_from("vip").unwrap())]);
        for identity in [Identity::Anonymous, Identity::Token] {
            let anyone = match identity {
                Identity::Anonymous => Principal::Anonymous,
                Identity::Token => user("u2", None, None),
            };
            let listed = Some(&list);
            assert_eq!(
                code(group(&anyone, identity, listed, &u("u2"), vip())),
                "group_not_granted"
            );
            assert_eq!(
                group(&anyone, identity, listed, &u("u2"), None).unwrap(),
                None
            );
        }
        let listed = Some(&list);
        assert_eq!(
            group(
                &Principal::Anonymous,
                Identity::Anonymous,
                listed,
                &u("u1"),
                None
            )
            .unwrap(),
            vip()
        );
        assert_eq!(
            group(
                &user("u1", None, None),
                Identity::Token,
                listed,
                &u("u1"),
                vip()
            )
            .unwrap(),
            vip()
        );
    }

    #[test]
    fn token_resources_take_the_user_from_the_token() {
        let t = Identity::Token;
        assert_eq!(
            code(act_as(&Principal::Anonymous, t, "user", "u1")),
            "token_required"
        );
        assert_eq!(
            code(act_as(&user("u2", None, None), t, "user", "u1")),
            "not_your_identity"
        );
        assert!(act_as(&user("u1", None, None), t, "user", "u1").is_ok());
        assert!(act_as(&key(Role::Site), t, "user", "u1").is_ok());
        assert!(act_as(&key(Role::Admin), t, "user", "u1").is_ok());
        assert_eq!(
            code(act_as(&key(Role::Viewer), t, "user", "u1")),
            "insufficient_role"
        );
        let u1 = UserId::try_from("u1").unwrap();
        assert!(read_as(&key(Role::Viewer), t, &u1).is_ok());
        assert_eq!(
            code(read_as(&user("u2", None, None), t, &u1)),
            "not_your_identity"
        );
        assert_eq!(
            code(read_as(&key(Role::Scorekeeper), t, &u1)),
            "insufficient_role"
        );
    }

    #[test]
    fn a_body_group_cannot_buy_a_weight_the_token_does_not_grant() {
        let t = Identity::Token;
        let vip = || Some(GroupId::try_from("vip").unwrap());
        let g = |p: &Principal, asked| group(p, t, None, &u("u1"), asked);
        assert_eq!(code(g(&user("u1", None, None), vip())), "group_not_granted");
        assert_eq!(
            code(g(&user("u1", Some("members"), None), vip())),
            "group_not_granted"
        );
        assert_eq!(g(&user("u1", Some("vip"), None), None).unwrap(), vip());
        assert_eq!(g(&user("u1", Some("vip"), None), vip()).unwrap(), vip());
        assert_eq!(g(&user("u1", None, None), None).unwrap(), None);
        assert_eq!(g(&key(Role::Site), vip()).unwrap(), vip());
    }

    #[test]
    fn scores_come_from_whom_the_tournament_says() {
        let red = TeamId::try_from("red").unwrap();
        assert!(score(&Principal::Anonymous, ScoresFrom::Anyone, &red).is_ok());
        assert_eq!(
            code(score(&Principal::Anonymous, ScoresFrom::Keys, &red)),
            "unauthorized"
        );
        assert!(score(&key(Role::Scorekeeper), ScoresFrom::Keys, &red).is_ok());
        assert!(score(&key(Role::Admin), ScoresFrom::Keys, &red).is_ok());
        assert_eq!(
            code(score(&key(Role::Site), ScoresFrom::Keys, &red)),
            "insufficient_role"
        );
        assert_eq!(
            code(score(&user("u", None, Some("red")), ScoresFrom::Keys, &red)),
            "insufficient_role"
        );
        assert!(score(&user("u", None, Some("red")), ScoresFrom::TeamToken, &red).is_ok());
        assert_eq!(
            code(score(
                &user("u", None, Some("blue")),
                ScoresFrom::TeamToken,
                &red
            )),
            "not_your_team"
        );
        assert!(score(&key(Role::Scorekeeper), ScoresFrom::TeamToken, &red).is_ok());
        assert_eq!(
            code(score(&Principal::Anonymous, ScoresFrom::TeamToken, &red)),
            "token_required"
        );
    }

    #[test]
    fn only_a_site_key_or_the_registrant_s_own_token_gives_an_address() {
        let ann: UserId = "ann".try_into().unwrap();
        let mail = || Some("ann@example.org".to_owned());
        let site = contact(&key(Role::Site), &ann, mail(), Some("Europe/Paris".into()));
        assert_eq!(
            site.unwrap().unwrap().time_zone.as_deref(),
            Some("Europe/Paris")
        );
        for refused in [
            Principal::Anonymous,
            key(Role::Scorekeeper),
            user("ann", None, None),
        ] {
            let refusal = contact(&refused, &ann, mail(), None);
            assert_eq!(code(refusal), "address_not_vouched");
        }
        let mut token = User {
            id: ann.clone(),
            group: None,
            team: None,
            email: mail(),
            time_zone: None,
        };
        let own = contact(&Principal::User(token.clone()), &ann, None, None).unwrap();
        assert_eq!(own.unwrap().email, "ann@example.org");
        token.id = "bob".try_into().unwrap();
        assert_eq!(
            contact(&Principal::User(token), &ann, None, None).unwrap(),
            None
        );
        assert_eq!(
            contact(&Principal::Anonymous, &ann, None, None).unwrap(),
            None
        );
    }
}
