"""Who may do what: the answer every URL should give each persona, for each method.

tests/test_authz_matrix.py walks the URL conf (pages, the API routers, every ModelAdmin's
URLs), asks each URL as each persona and compares with ``TABLE``. A URL or method without
a row fails there, named; so does a row whose URL is gone. When a change is intended,
the failure prints the row as the app now answers: check it, and paste it here.

A row: the URL's name (with its namespace), or its route when it has no name; the method;
then one outcome per persona, in the order of ``PERSONAS``:

    anonymous  not signed in (pages) or no token (API)
    outsider   signed in, holds nothing, owns nothing, manages nobody
    requester  holds the grant, made the request and owns the API token the URLs name
    approver   owns the resource (and so reviews the request)
    manager    the requester's manager
    auditor    the Auditor role
    admin      the Admin role

Pages are asked with a session, the API with each persona's API token. A POST carries a
valid form for its URL (see ``_bodies`` in the test), the admin's URLs an empty one.

Outcomes:

    ok        2xx: shown, or done
    redirect  3xx elsewhere than the login page: done (or nothing to do) and sent on
    refused   3xx back with an error message: the page's way of saying no to a valid form
    login     3xx to the login page (for the admin, its login page's answer counts)
    400 401 403 404 405 409 ...  that status; 5xx is never right

Someone else's object the persona may not see is 404; one they may see but not act on
is 403 (the API: "not found" is decided by the queryset, "not allowed" by the permission).
"""

from __future__ import annotations

PERSONAS = ("anonymous", "outsider", "requester", "approver", "manager", "auditor", "admin")
OUTCOMES = {"ok", "redirect", "refused", "login", "400", "401", "403", "404", "405", "409"}

# URLs not in the matrix, with the reason. Static files are served by the web server (or
# runserver) and are not in the URL conf; nothing else is left out.
EXCLUDED: dict[str, str] = {}

# URL names served twice, where the first pattern (ours) shadows a later one that can never
# be reached; the table describes the first. Each with the reason.
_ATOMIC_ACCOUNT_PAGE = (
    "access/views/account.py serves allauth's page first, atomic with its audit event and "
    "refusing unverified addresses; allauth's own pattern under accounts/ is never reached"
)
SHADOWED: dict[str, str] = {
    "account_email": _ATOMIC_ACCOUNT_PAGE,
    "account_confirm_email": _ATOMIC_ACCOUNT_PAGE,
    "account_change_password": _ATOMIC_ACCOUNT_PAGE,
    "account_set_password": _ATOMIC_ACCOUNT_PAGE,
    "account_reset_password_from_key": _ATOMIC_ACCOUNT_PAGE,
}

# Cells the app does not meet yet: (URL, method, persona) -> the bug. Their tests are
# expected failures (strict: once the app meets the cell, the test says to remove it).
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}

# fmt: off
TABLE = """
# URL                                                      method anonymous outsider  requester approver  manager   auditor   admin

# The portal's pages (the sign-in pages below)
home                                                       GET    login     ok        ok        ok        ok        ok        ok
home                                                       POST   login     405       405       405       405       405       405
healthz                                                    GET    ok        ok        ok        ok        ok        ok        ok
healthz                                                    POST   405       405       405       405       405       405       405

# Sign-in and the account pages (django-allauth)
account_login                                              GET    ok        redirect  redirect  redirect  redirect  redirect  redirect
account_login                                              POST   ok        redirect  redirect  redirect  redirect  redirect  redirect
account_logout                                             GET    login     ok        ok        ok        ok        ok        ok
account_logout                                             POST   login     login     login     login     login     login     login
account_inactive                                           GET    ok        ok        ok        ok        ok        ok        ok
account_inactive                                           POST   405       405       405       405       405       405       405
account_signup                                             GET    ok        redirect  redirect  redirect  redirect  redirect  redirect
account_signup                                             POST   ok        redirect  redirect  redirect  redirect  redirect  redirect
account_reauthenticate                                     GET    login     ok        ok        ok        ok        ok        ok
account_reauthenticate                                     POST   login     ok        ok        ok        ok        ok        ok
account_request_reauthentication_code                      GET    login     redirect  redirect  redirect  redirect  redirect  redirect
account_request_reauthentication_code                      POST   login     redirect  redirect  redirect  redirect  redirect  redirect
account_confirm_reauthentication_code                      GET    login     redirect  redirect  redirect  redirect  redirect  redirect
account_confirm_reauthentication_code                      POST   login     redirect  redirect  redirect  redirect  redirect  redirect
account_email                                              GET    login     ok        ok        ok        ok        ok        ok
account_email                                              POST   login     redirect  redirect  redirect  redirect  redirect  redirect
account_email_verification_sent                            GET    ok        ok        ok        ok        ok        ok        ok
account_email_verification_sent                            POST   405       405       405       405       405       405       405
account_change_password                                    GET    login     ok        ok        ok        ok        ok        ok
account_change_password                                    POST   login     ok        ok        ok        ok        ok        ok
account_set_password                                       GET    login     redirect  redirect  redirect  redirect  redirect  redirect
account_set_password                                       POST   login     redirect  redirect  redirect  redirect  redirect  redirect
account_reset_password                                     GET    ok        ok        ok        ok        ok        ok        ok
account_reset_password                                     POST   ok        ok        ok        ok        ok        ok        ok
account_confirm_login_code                                 GET    login     redirect  redirect  redirect  redirect  redirect  redirect
account_confirm_login_code                                 POST   login     redirect  redirect  redirect  redirect  redirect  redirect
account_confirm_email                                      GET    ok        ok        ok        ok        ok        ok        ok
account_confirm_email                                      POST   404       404       404       404       404       404       404
account_reset_password_from_key_done                       GET    ok        ok        ok        ok        ok        ok        ok
account_reset_password_from_key_done                       POST   405       405       405       405       405       405       405
account_reset_password_from_key                            GET    ok        ok        ok        ok        ok        ok        ok
account_reset_password_from_key                            POST   ok        ok        ok        ok        ok        ok        ok
account_reset_password_done                                GET    ok        ok        ok        ok        ok        ok        ok
account_reset_password_done                                POST   405       405       405       405       405       405       405
socialaccount_login_cancelled                              GET    ok        ok        ok        ok        ok        ok        ok
socialaccount_login_cancelled                              POST   405       405       405       405       405       405       405
socialaccount_login_error                                  GET    401       401       401       401       401       401       401
socialaccount_login_error                                  POST   405       405       405       405       405       405       405
socialaccount_signup                                       GET    login     login     login     login     login     login     login
socialaccount_signup                                       POST   login     login     login     login     login     login     login
socialaccount_connections                                  GET    login     ok        ok        ok        ok        ok        ok
socialaccount_connections                                  POST   login     ok        ok        ok        ok        ok        ok
accounts/social/login/cancelled/                           GET    redirect  redirect  redirect  redirect  redirect  redirect  redirect
accounts/social/login/cancelled/                           POST   redirect  redirect  redirect  redirect  redirect  redirect  redirect
accounts/social/login/error/                               GET    redirect  redirect  redirect  redirect  redirect  redirect  redirect
accounts/social/login/error/                               POST   redirect  redirect  redirect  redirect  redirect  redirect  redirect
accounts/social/signup/                                    GET    redirect  redirect  redirect  redirect  redirect  redirect  redirect
accounts/social/signup/                                    POST   redirect  redirect  redirect  redirect  redirect  redirect  redirect
accounts/social/connections/                               GET    redirect  redirect  redirect  redirect  redirect  redirect  redirect
accounts/social/connections/                               POST   redirect  redirect  redirect  redirect  redirect  redirect  redirect
openid_connect_login                                       GET    404       404       404       404       404       404       404
openid_connect_login                                       POST   404       404       404       404       404       404       404
openid_connect_callback                                    GET    404       404       404       404       404       404       404
openid_connect_callback                                    POST   404       404       404       404       404       404       404

# The admin: the Admin role only (the Auditor reads the log at /audit/). allauth's models are
# not the Admin role's (access/roles.py gives it no permission there): SSO is set by environment.
admin:index                                                GET    login     403       403       403       403       403       ok
admin:index                                                POST   login     403       403       403       403       403       ok
admin:login                                                GET    login     403       403       403       403       403       login
admin:login                                                POST   login     403       403       403       403       403       login
admin:logout                                               GET    redirect  redirect  redirect  redirect  redirect  redirect  405
admin:logout                                               POST   redirect  redirect  redirect  redirect  redirect  redirect  ok
admin:password_change                                      GET    login     403       403       403       403       403       ok
admin:password_change                                      POST   login     403       403       403       403       403       ok
admin:password_change_done                                 GET    login     403       403       403       403       403       ok
admin:password_change_done                                 POST   login     403       403       403       403       403       405
admin:autocomplete                                         GET    login     403       403       403       403       403       403
admin:autocomplete                                         POST   login     403       403       403       403       403       405
admin:jsi18n                                               GET    login     403       403       403       403       403       ok
admin:jsi18n                                               POST   login     403       403       403       403       403       405
admin:view_on_site                                         GET    login     403       403       403       403       403       404
admin:view_on_site                                         POST   login     403       403       403       403       403       404
admin:account_emailaddress_changelist                      GET    login     403       403       403       403       403       403
admin:account_emailaddress_changelist                      POST   login     403       403       403       403       403       403
admin:account_emailaddress_add                             GET    login     403       403       403       403       403       403
admin:account_emailaddress_add                             POST   login     403       403       403       403       403       403
admin:account_emailaddress_history                         GET    login     403       403       403       403       403       403
admin:account_emailaddress_history                         POST   login     403       403       403       403       403       403
admin:account_emailaddress_delete                          GET    login     403       403       403       403       403       403
admin:account_emailaddress_delete                          POST   login     403       403       403       403       403       403
admin:account_emailaddress_change                          GET    login     403       403       403       403       403       403
admin:account_emailaddress_change                          POST   login     403       403       403       403       403       403
admin/account/emailaddress/<path:object_id>/               GET    login     403       403       403       403       403       redirect
admin/account/emailaddress/<path:object_id>/               POST   login     403       403       403       403       403       redirect
admin:socialaccount_socialapp_changelist                   GET    login     403       403       403       403       403       403
admin:socialaccount_socialapp_changelist                   POST   login     403       403       403       403       403       403
admin:socialaccount_socialapp_add                          GET    login     403       403       403       403       403       403
admin:socialaccount_socialapp_add                          POST   login     403       403       403       403       403       403
admin:socialaccount_socialapp_history                      GET    login     403       403       403       403       403       403
admin:socialaccount_socialapp_history                      POST   login     403       403       403       403       403       403
admin:socialaccount_socialapp_delete                       GET    login     403       403       403       403       403       403
admin:socialaccount_socialapp_delete                       POST   login     403       403       403       403       403       403
admin:socialaccount_socialapp_change                       GET    login     403       403       403       403       403       403
admin:socialaccount_socialapp_change                       POST   login     403       403       403       403       403       403
admin/socialaccount/socialapp/<path:object_id>/            GET    login     403       403       403       403       403       redirect
admin/socialaccount/socialapp/<path:object_id>/            POST   login     403       403       403       403       403       redirect
admin:socialaccount_socialtoken_changelist                 GET    login     403       403       403       403       403       403
admin:socialaccount_socialtoken_changelist                 POST   login     403       403       403       403       403       403
admin:socialaccount_socialtoken_add                        GET    login     403       403       403       403       403       403
admin:socialaccount_socialtoken_add                        POST   login     403       403       403       403       403       403
admin:socialaccount_socialtoken_history                    GET    login     403       403       403       403       403       403
admin:socialaccount_socialtoken_history                    POST   login     403       403       403       403       403       403
admin:socialaccount_socialtoken_delete                     GET    login     403       403       403       403       403       403
admin:socialaccount_socialtoken_delete                     POST   login     403       403       403       403       403       403
admin:socialaccount_socialtoken_change                     GET    login     403       403       403       403       403       403
admin:socialaccount_socialtoken_change                     POST   login     403       403       403       403       403       403
admin/socialaccount/socialtoken/<path:object_id>/          GET    login     403       403       403       403       403       redirect
admin/socialaccount/socialtoken/<path:object_id>/          POST   login     403       403       403       403       403       redirect
admin:socialaccount_socialaccount_changelist               GET    login     403       403       403       403       403       403
admin:socialaccount_socialaccount_changelist               POST   login     403       403       403       403       403       403
admin:socialaccount_socialaccount_add                      GET    login     403       403       403       403       403       403
admin:socialaccount_socialaccount_add                      POST   login     403       403       403       403       403       403
admin:socialaccount_socialaccount_history                  GET    login     403       403       403       403       403       403
admin:socialaccount_socialaccount_history                  POST   login     403       403       403       403       403       403
admin:socialaccount_socialaccount_delete                   GET    login     403       403       403       403       403       403
admin:socialaccount_socialaccount_delete                   POST   login     403       403       403       403       403       403
admin:socialaccount_socialaccount_change                   GET    login     403       403       403       403       403       403
admin:socialaccount_socialaccount_change                   POST   login     403       403       403       403       403       403
admin/socialaccount/socialaccount/<path:object_id>/        GET    login     403       403       403       403       403       redirect
admin/socialaccount/socialaccount/<path:object_id>/        POST   login     403       403       403       403       403       redirect

# django-q2: read-only (issue 8 #5); schedules are declared in code
admin:django_q_schedule_changelist                         GET    login     403       403       403       403       403       ok
admin:django_q_schedule_changelist                         POST   login     403       403       403       403       403       ok
admin:django_q_schedule_add                                GET    login     403       403       403       403       403       403
admin:django_q_schedule_add                                POST   login     403       403       403       403       403       403
admin:django_q_schedule_history                            GET    login     403       403       403       403       403       ok
admin:django_q_schedule_history                            POST   login     403       403       403       403       403       ok
admin:django_q_schedule_delete                             GET    login     403       403       403       403       403       403
admin:django_q_schedule_delete                             POST   login     403       403       403       403       403       403
admin:django_q_schedule_change                             GET    login     403       403       403       403       403       ok
admin:django_q_schedule_change                             POST   login     403       403       403       403       403       403
admin/django_q/schedule/<path:object_id>/                  GET    login     403       403       403       403       403       redirect
admin/django_q/schedule/<path:object_id>/                  POST   login     403       403       403       403       403       redirect
admin:django_q_success_changelist                          GET    login     403       403       403       403       403       ok
admin:django_q_success_changelist                          POST   login     403       403       403       403       403       ok
admin:django_q_success_add                                 GET    login     403       403       403       403       403       403
admin:django_q_success_add                                 POST   login     403       403       403       403       403       403
admin:django_q_success_history                             GET    login     403       403       403       403       403       ok
admin:django_q_success_history                             POST   login     403       403       403       403       403       ok
admin:django_q_success_delete                              GET    login     403       403       403       403       403       403
admin:django_q_success_delete                              POST   login     403       403       403       403       403       403
admin:django_q_success_change                              GET    login     403       403       403       403       403       ok
admin:django_q_success_change                              POST   login     403       403       403       403       403       403
admin/django_q/success/<path:object_id>/                   GET    login     403       403       403       403       403       redirect
admin/django_q/success/<path:object_id>/                   POST   login     403       403       403       403       403       redirect
admin:django_q_failure_changelist                          GET    login     403       403       403       403       403       ok
admin:django_q_failure_changelist                          POST   login     403       403       403       403       403       ok
admin:django_q_failure_add                                 GET    login     403       403       403       403       403       403
admin:django_q_failure_add                                 POST   login     403       403       403       403       403       403
admin:django_q_failure_history                             GET    login     403       403       403       403       403       ok
admin:django_q_failure_history                             POST   login     403       403       403       403       403       ok
admin:django_q_failure_delete                              GET    login     403       403       403       403       403       403
admin:django_q_failure_delete                              POST   login     403       403       403       403       403       403
admin:django_q_failure_change                              GET    login     403       403       403       403       403       ok
admin:django_q_failure_change                              POST   login     403       403       403       403       403       403
admin/django_q/failure/<path:object_id>/                   GET    login     403       403       403       403       403       redirect
admin/django_q/failure/<path:object_id>/                   POST   login     403       403       403       403       403       redirect
admin:django_q_ormq_changelist                             GET    login     403       403       403       403       403       ok
admin:django_q_ormq_changelist                             POST   login     403       403       403       403       403       ok
admin:django_q_ormq_add                                    GET    login     403       403       403       403       403       403
admin:django_q_ormq_add                                    POST   login     403       403       403       403       403       403
admin:django_q_ormq_history                                GET    login     403       403       403       403       403       ok
admin:django_q_ormq_history                                POST   login     403       403       403       403       403       ok
admin:django_q_ormq_delete                                 GET    login     403       403       403       403       403       403
admin:django_q_ormq_delete                                 POST   login     403       403       403       403       403       403
admin:django_q_ormq_change                                 GET    login     403       403       403       403       403       ok
admin:django_q_ormq_change                                 POST   login     403       403       403       403       403       403
admin/django_q/ormq/<path:object_id>/                      GET    login     403       403       403       403       403       redirect
admin/django_q/ormq/<path:object_id>/                      POST   login     403       403       403       403       403       redirect

# Portcullis's models
admin:audit_auditevent_changelist                          GET    login     403       403       403       403       403       ok
admin:audit_auditevent_changelist                          POST   login     403       403       403       403       403       ok
admin:audit_auditevent_add                                 GET    login     403       403       403       403       403       403
admin:audit_auditevent_add                                 POST   login     403       403       403       403       403       403
admin:audit_auditevent_history                             GET    login     403       403       403       403       403       ok
admin:audit_auditevent_history                             POST   login     403       403       403       403       403       ok
admin:audit_auditevent_delete                              GET    login     403       403       403       403       403       403
admin:audit_auditevent_delete                              POST   login     403       403       403       403       403       403
admin:audit_auditevent_change                              GET    login     403       403       403       403       403       ok
admin:audit_auditevent_change                              POST   login     403       403       403       403       403       403
admin/audit/auditevent/<path:object_id>/                   GET    login     403       403       403       403       403       redirect
admin/audit/auditevent/<path:object_id>/                   POST   login     403       403       403       403       403       redirect
admin:access_accessrequest_changelist                      GET    login     403       403       403       403       403       ok
admin:access_accessrequest_changelist                      POST   login     403       403       403       403       403       ok
admin:access_accessrequest_add                             GET    login     403       403       403       403       403       403
admin:access_accessrequest_add                             POST   login     403       403       403       403       403       403
admin:access_accessrequest_history                         GET    login     403       403       403       403       403       ok
admin:access_accessrequest_history                         POST   login     403       403       403       403       403       ok
admin:access_accessrequest_delete                          GET    login     403       403       403       403       403       403
admin:access_accessrequest_delete                          POST   login     403       403       403       403       403       403
admin:access_accessrequest_change                          GET    login     403       403       403       403       403       ok
admin:access_accessrequest_change                          POST   login     403       403       403       403       403       403
admin/access/accessrequest/<path:object_id>/               GET    login     403       403       403       403       403       redirect
admin/access/accessrequest/<path:object_id>/               POST   login     403       403       403       403       403       redirect
admin:access_assignment_changelist                         GET    login     403       403       403       403       403       ok
admin:access_assignment_changelist                         POST   login     403       403       403       403       403       ok
admin:access_assignment_add                                GET    login     403       403       403       403       403       403
admin:access_assignment_add                                POST   login     403       403       403       403       403       403
admin:access_assignment_history                            GET    login     403       403       403       403       403       ok
admin:access_assignment_history                            POST   login     403       403       403       403       403       ok
admin:access_assignment_delete                             GET    login     403       403       403       403       403       403
admin:access_assignment_delete                             POST   login     403       403       403       403       403       403
admin:access_assignment_change                             GET    login     403       403       403       403       403       ok
admin:access_assignment_change                             POST   login     403       403       403       403       403       403
admin/access/assignment/<path:object_id>/                  GET    login     403       403       403       403       403       redirect
admin/access/assignment/<path:object_id>/                  POST   login     403       403       403       403       403       redirect
admin:access_grant_changelist                              GET    login     403       403       403       403       403       ok
admin:access_grant_changelist                              POST   login     403       403       403       403       403       ok
admin:access_grant_add                                     GET    login     403       403       403       403       403       ok
admin:access_grant_add                                     POST   login     403       403       403       403       403       ok
admin:access_grant_history                                 GET    login     403       403       403       403       403       ok
admin:access_grant_history                                 POST   login     403       403       403       403       403       ok
admin:access_grant_delete                                  GET    login     403       403       403       403       403       403
admin:access_grant_delete                                  POST   login     403       403       403       403       403       403
admin:access_grant_change                                  GET    login     403       403       403       403       403       ok
admin:access_grant_change                                  POST   login     403       403       403       403       403       403
admin/access/grant/<path:object_id>/                       GET    login     403       403       403       403       403       redirect
admin/access/grant/<path:object_id>/                       POST   login     403       403       403       403       403       redirect
admin:access_app_changelist                                GET    login     403       403       403       403       403       ok
admin:access_app_changelist                                POST   login     403       403       403       403       403       ok
admin:access_app_add                                       GET    login     403       403       403       403       403       ok
admin:access_app_add                                       POST   login     403       403       403       403       403       ok
admin:access_app_history                                   GET    login     403       403       403       403       403       ok
admin:access_app_history                                   POST   login     403       403       403       403       403       ok
admin:access_app_delete                                    GET    login     403       403       403       403       403       ok
admin:access_app_delete                                    POST   login     403       403       403       403       403       ok
admin:access_app_change                                    GET    login     403       403       403       403       403       ok
admin:access_app_change                                    POST   login     403       403       403       403       403       ok
admin/access/app/<path:object_id>/                         GET    login     403       403       403       403       403       redirect
admin/access/app/<path:object_id>/                         POST   login     403       403       403       403       403       redirect
admin:access_resource_changelist                           GET    login     403       403       403       403       403       ok
admin:access_resource_changelist                           POST   login     403       403       403       403       403       ok
admin:access_resource_add                                  GET    login     403       403       403       403       403       ok
admin:access_resource_add                                  POST   login     403       403       403       403       403       ok
admin:access_resource_history                              GET    login     403       403       403       403       403       ok
admin:access_resource_history                              POST   login     403       403       403       403       403       ok
admin:access_resource_delete                               GET    login     403       403       403       403       403       ok
admin:access_resource_delete                               POST   login     403       403       403       403       403       ok
admin:access_resource_change                               GET    login     403       403       403       403       403       ok
admin:access_resource_change                               POST   login     403       403       403       403       403       ok
admin/access/resource/<path:object_id>/                    GET    login     403       403       403       403       403       redirect
admin/access/resource/<path:object_id>/                    POST   login     403       403       403       403       403       redirect
admin:access_accesslevel_changelist                        GET    login     403       403       403       403       403       ok
admin:access_accesslevel_changelist                        POST   login     403       403       403       403       403       ok
admin:access_accesslevel_add                               GET    login     403       403       403       403       403       ok
admin:access_accesslevel_add                               POST   login     403       403       403       403       403       ok
admin:access_accesslevel_history                           GET    login     403       403       403       403       403       ok
admin:access_accesslevel_history                           POST   login     403       403       403       403       403       ok
admin:access_accesslevel_delete                            GET    login     403       403       403       403       403       ok
admin:access_accesslevel_delete                            POST   login     403       403       403       403       403       ok
admin:access_accesslevel_change                            GET    login     403       403       403       403       403       ok
admin:access_accesslevel_change                            POST   login     403       403       403       403       403       ok
admin/access/accesslevel/<path:object_id>/                 GET    login     403       403       403       403       403       redirect
admin/access/accesslevel/<path:object_id>/                 POST   login     403       403       403       403       403       redirect
admin:access_owner_changelist                              GET    login     403       403       403       403       403       ok
admin:access_owner_changelist                              POST   login     403       403       403       403       403       ok
admin:access_owner_add                                     GET    login     403       403       403       403       403       ok
admin:access_owner_add                                     POST   login     403       403       403       403       403       ok
admin:access_owner_history                                 GET    login     403       403       403       403       403       ok
admin:access_owner_history                                 POST   login     403       403       403       403       403       ok
admin:access_owner_delete                                  GET    login     403       403       403       403       403       ok
admin:access_owner_delete                                  POST   login     403       403       403       403       403       ok
admin:access_owner_change                                  GET    login     403       403       403       403       403       ok
admin:access_owner_change                                  POST   login     403       403       403       403       403       ok
admin/access/owner/<path:object_id>/                       GET    login     403       403       403       403       403       redirect
admin/access/owner/<path:object_id>/                       POST   login     403       403       403       403       403       redirect
admin:access_requestrule_changelist                        GET    login     403       403       403       403       403       ok
admin:access_requestrule_changelist                        POST   login     403       403       403       403       403       ok
admin:access_requestrule_add                               GET    login     403       403       403       403       403       ok
admin:access_requestrule_add                               POST   login     403       403       403       403       403       ok
admin:access_requestrule_history                           GET    login     403       403       403       403       403       ok
admin:access_requestrule_history                           POST   login     403       403       403       403       403       ok
admin:access_requestrule_delete                            GET    login     403       403       403       403       403       ok
admin:access_requestrule_delete                            POST   login     403       403       403       403       403       ok
admin:access_requestrule_change                            GET    login     403       403       403       403       403       ok
admin:access_requestrule_change                            POST   login     403       403       403       403       403       ok
admin/access/requestrule/<path:object_id>/                 GET    login     403       403       403       403       403       redirect
admin/access/requestrule/<path:object_id>/                 POST   login     403       403       403       403       403       redirect
admin:access_user_process_import                           GET    login     403       403       403       403       403       405
admin:access_user_process_import                           POST   login     403       403       403       403       403       ok
admin:access_user_import                                   GET    login     403       403       403       403       403       ok
admin:access_user_import                                   POST   login     403       403       403       403       403       ok
admin:access_user_export                                   GET    login     403       403       403       403       403       ok
admin:access_user_export                                   POST   login     403       403       403       403       403       ok
admin:auth_user_password_change                            GET    login     403       403       403       403       403       ok
admin:auth_user_password_change                            POST   login     403       403       403       403       403       ok
admin:access_user_changelist                               GET    login     403       403       403       403       403       ok
admin:access_user_changelist                               POST   login     403       403       403       403       403       ok
admin:access_user_add                                      GET    login     403       403       403       403       403       ok
admin:access_user_add                                      POST   login     403       403       403       403       403       ok
admin:access_user_history                                  GET    login     403       403       403       403       403       ok
admin:access_user_history                                  POST   login     403       403       403       403       403       ok
admin:access_user_delete                                   GET    login     403       403       403       403       403       403
admin:access_user_delete                                   POST   login     403       403       403       403       403       403
admin:access_user_change                                   GET    login     403       403       403       403       403       ok
admin:access_user_change                                   POST   login     403       403       403       403       403       ok
admin/access/user/<path:object_id>/                        GET    login     403       403       403       403       403       redirect
admin/access/user/<path:object_id>/                        POST   login     403       403       403       403       403       redirect
admin:access_usergroup_changelist                          GET    login     403       403       403       403       403       ok
admin:access_usergroup_changelist                          POST   login     403       403       403       403       403       ok
admin:access_usergroup_add                                 GET    login     403       403       403       403       403       ok
admin:access_usergroup_add                                 POST   login     403       403       403       403       403       ok
admin:access_usergroup_history                             GET    login     403       403       403       403       403       ok
admin:access_usergroup_history                             POST   login     403       403       403       403       403       ok
admin:access_usergroup_delete                              GET    login     403       403       403       403       403       ok
admin:access_usergroup_delete                              POST   login     403       403       403       403       403       ok
admin:access_usergroup_change                              GET    login     403       403       403       403       403       ok
admin:access_usergroup_change                              POST   login     403       403       403       403       403       ok
admin/access/usergroup/<path:object_id>/                   GET    login     403       403       403       403       403       redirect
admin/access/usergroup/<path:object_id>/                   POST   login     403       403       403       403       403       redirect
admin:auth_group_changelist                                GET    login     403       403       403       403       403       ok
admin:auth_group_changelist                                POST   login     403       403       403       403       403       ok
admin:auth_group_add                                       GET    login     403       403       403       403       403       403
admin:auth_group_add                                       POST   login     403       403       403       403       403       403
admin:auth_group_history                                   GET    login     403       403       403       403       403       ok
admin:auth_group_history                                   POST   login     403       403       403       403       403       ok
admin:auth_group_delete                                    GET    login     403       403       403       403       403       403
admin:auth_group_delete                                    POST   login     403       403       403       403       403       403
admin:auth_group_change                                    GET    login     403       403       403       403       403       ok
admin:auth_group_change                                    POST   login     403       403       403       403       403       403
admin/auth/group/<path:object_id>/                         GET    login     403       403       403       403       403       redirect
admin/auth/group/<path:object_id>/                         POST   login     403       403       403       403       403       redirect
admin:access_apitoken_changelist                           GET    login     403       403       403       403       403       ok
admin:access_apitoken_changelist                           POST   login     403       403       403       403       403       ok
admin:access_apitoken_add                                  GET    login     403       403       403       403       403       403
admin:access_apitoken_add                                  POST   login     403       403       403       403       403       403
admin:access_apitoken_history                              GET    login     403       403       403       403       403       ok
admin:access_apitoken_history                              POST   login     403       403       403       403       403       ok
admin:access_apitoken_delete                               GET    login     403       403       403       403       403       403
admin:access_apitoken_delete                               POST   login     403       403       403       403       403       403
admin:access_apitoken_change                               GET    login     403       403       403       403       403       ok
admin:access_apitoken_change                               POST   login     403       403       403       403       403       403
admin/access/apitoken/<path:object_id>/                    GET    login     403       403       403       403       403       redirect
admin/access/apitoken/<path:object_id>/                    POST   login     403       403       403       403       403       redirect
admin:aws_integration_awsapp_refresh_validations           GET    login     403       403       403       403       403       405
admin:aws_integration_awsapp_refresh_validations           POST   login     403       403       403       403       403       refused
admin:aws_integration_awsapp_sync_now                      GET    login     403       403       403       403       403       405
admin:aws_integration_awsapp_sync_now                      POST   login     403       403       403       403       403       redirect
admin:aws_integration_awsapp_sync_runs                     GET    login     403       403       403       403       403       ok
admin:aws_integration_awsapp_sync_runs                     POST   login     403       403       403       403       403       405
admin:aws_integration_awsapp_changelist                    GET    login     403       403       403       403       403       ok
admin:aws_integration_awsapp_changelist                    POST   login     403       403       403       403       403       ok
admin:aws_integration_awsapp_add                           GET    login     403       403       403       403       403       ok
admin:aws_integration_awsapp_add                           POST   login     403       403       403       403       403       ok
admin:aws_integration_awsapp_history                       GET    login     403       403       403       403       403       ok
admin:aws_integration_awsapp_history                       POST   login     403       403       403       403       403       ok
admin:aws_integration_awsapp_delete                        GET    login     403       403       403       403       403       ok
admin:aws_integration_awsapp_delete                        POST   login     403       403       403       403       403       ok
admin:aws_integration_awsapp_change                        GET    login     403       403       403       403       403       ok
admin:aws_integration_awsapp_change                        POST   login     403       403       403       403       403       ok
admin/aws_integration/awsapp/<path:object_id>/             GET    login     403       403       403       403       403       redirect
admin/aws_integration/awsapp/<path:object_id>/             POST   login     403       403       403       403       403       redirect
admin:aws_integration_awssettings_regenerate_external_id   GET    login     403       403       403       403       403       ok
admin:aws_integration_awssettings_regenerate_external_id   POST   login     403       403       403       403       403       redirect
admin:aws_integration_awssettings_changelist               GET    login     403       403       403       403       403       redirect
admin:aws_integration_awssettings_changelist               POST   login     403       403       403       403       403       redirect
admin:aws_integration_awssettings_add                      GET    login     403       403       403       403       403       redirect
admin:aws_integration_awssettings_add                      POST   login     403       403       403       403       403       redirect
admin:aws_integration_awssettings_history                  GET    login     403       403       403       403       403       ok
admin:aws_integration_awssettings_history                  POST   login     403       403       403       403       403       ok
admin:aws_integration_awssettings_delete                   GET    login     403       403       403       403       403       403
admin:aws_integration_awssettings_delete                   POST   login     403       403       403       403       403       403
admin:aws_integration_awssettings_change                   GET    login     403       403       403       403       403       ok
admin:aws_integration_awssettings_change                   POST   login     403       403       403       403       403       redirect
admin/aws_integration/awssettings/<path:object_id>/        GET    login     403       403       403       403       403       redirect
admin/aws_integration/awssettings/<path:object_id>/        POST   login     403       403       403       403       403       redirect
admin:aws_integration_syncrun_changelist                   GET    login     403       403       403       403       403       ok
admin:aws_integration_syncrun_changelist                   POST   login     403       403       403       403       403       ok
admin:aws_integration_syncrun_add                          GET    login     403       403       403       403       403       403
admin:aws_integration_syncrun_add                          POST   login     403       403       403       403       403       403
admin:aws_integration_syncrun_history                      GET    login     403       403       403       403       403       ok
admin:aws_integration_syncrun_history                      POST   login     403       403       403       403       403       ok
admin:aws_integration_syncrun_delete                       GET    login     403       403       403       403       403       403
admin:aws_integration_syncrun_delete                       POST   login     403       403       403       403       403       403
admin:aws_integration_syncrun_change                       GET    login     403       403       403       403       403       ok
admin:aws_integration_syncrun_change                       POST   login     403       403       403       403       403       403
admin/aws_integration/syncrun/<path:object_id>/            GET    login     403       403       403       403       403       redirect
admin/aws_integration/syncrun/<path:object_id>/            POST   login     403       403       403       403       403       redirect
admin:aws_integration_syncissue_changelist                 GET    login     403       403       403       403       403       ok
admin:aws_integration_syncissue_changelist                 POST   login     403       403       403       403       403       ok
admin:aws_integration_syncissue_add                        GET    login     403       403       403       403       403       403
admin:aws_integration_syncissue_add                        POST   login     403       403       403       403       403       403
admin:aws_integration_syncissue_history                    GET    login     403       403       403       403       403       ok
admin:aws_integration_syncissue_history                    POST   login     403       403       403       403       403       ok
admin:aws_integration_syncissue_delete                     GET    login     403       403       403       403       403       403
admin:aws_integration_syncissue_delete                     POST   login     403       403       403       403       403       403
admin:aws_integration_syncissue_change                     GET    login     403       403       403       403       403       ok
admin:aws_integration_syncissue_change                     POST   login     403       403       403       403       403       403
admin/aws_integration/syncissue/<path:object_id>/          GET    login     403       403       403       403       403       redirect
admin/aws_integration/syncissue/<path:object_id>/          POST   login     403       403       403       403       403       redirect
admin:aws_integration_badeventmessage_changelist           GET    login     403       403       403       403       403       ok
admin:aws_integration_badeventmessage_changelist           POST   login     403       403       403       403       403       ok
admin:aws_integration_badeventmessage_add                  GET    login     403       403       403       403       403       403
admin:aws_integration_badeventmessage_add                  POST   login     403       403       403       403       403       403
admin:aws_integration_badeventmessage_history              GET    login     403       403       403       403       403       ok
admin:aws_integration_badeventmessage_history              POST   login     403       403       403       403       403       ok
admin:aws_integration_badeventmessage_delete               GET    login     403       403       403       403       403       403
admin:aws_integration_badeventmessage_delete               POST   login     403       403       403       403       403       403
admin:aws_integration_badeventmessage_change               GET    login     403       403       403       403       403       ok
admin:aws_integration_badeventmessage_change               POST   login     403       403       403       403       403       403
admin/aws_integration/badeventmessage/<path:object_id>/    GET    login     403       403       403       403       403       redirect
admin/aws_integration/badeventmessage/<path:object_id>/    POST   login     403       403       403       403       403       redirect
admin:aws_integration_validation_changelist                GET    login     403       403       403       403       403       ok
admin:aws_integration_validation_changelist                POST   login     403       403       403       403       403       ok
admin:aws_integration_validation_add                       GET    login     403       403       403       403       403       403
admin:aws_integration_validation_add                       POST   login     403       403       403       403       403       403
admin:aws_integration_validation_history                   GET    login     403       403       403       403       403       ok
admin:aws_integration_validation_history                   POST   login     403       403       403       403       403       ok
admin:aws_integration_validation_delete                    GET    login     403       403       403       403       403       403
admin:aws_integration_validation_delete                    POST   login     403       403       403       403       403       403
admin:aws_integration_validation_change                    GET    login     403       403       403       403       403       ok
admin:aws_integration_validation_change                    POST   login     403       403       403       403       403       403
admin/aws_integration/validation/<path:object_id>/         GET    login     403       403       403       403       403       redirect
admin/aws_integration/validation/<path:object_id>/         POST   login     403       403       403       403       403       redirect
admin:app_list                                             GET    login     403       403       403       403       403       ok
admin:app_list                                             POST   login     403       403       403       403       403       ok
admin/(?P<url>.*)$                                         GET    login     403       403       403       403       403       404
admin/(?P<url>.*)$                                         POST   login     403       403       403       403       403       404

# The audit log and the rest of the portal
audit:event-list                                           GET    login     403       403       403       403       ok        ok
audit:event-list                                           POST   login     405       405       405       405       405       405
audit:event-detail                                         GET    login     403       403       403       403       ok        ok
audit:event-detail                                         POST   login     405       405       405       405       405       405
api-token-list                                             GET    login     ok        ok        ok        ok        ok        ok
api-token-list                                             POST   login     405       405       405       405       405       405
api-token-create                                           GET    login     405       405       405       405       405       405
api-token-create                                           POST   login     ok        ok        ok        ok        ok        ok
api-token-revoke                                           GET    login     405       405       405       405       405       405
api-token-revoke                                           POST   login     404       redirect  404       404       404       404
catalogue                                                  GET    login     ok        ok        ok        ok        ok        ok
catalogue                                                  POST   login     405       405       405       405       405       405
resource-detail                                            GET    login     ok        ok        ok        ok        ok        ok
resource-detail                                            POST   login     405       405       405       405       405       405
resource-rules                                             GET    login     403       403       ok        403       403       ok
resource-rules                                             POST   login     405       405       405       405       405       405
resource-rule-new                                          GET    login     403       403       ok        403       403       ok
resource-rule-new                                          POST   login     403       403       redirect  403       403       redirect
resource-rule-edit                                         GET    login     403       403       ok        403       403       ok
resource-rule-edit                                         POST   login     403       403       redirect  403       403       redirect
resource-rule-delete                                       GET    login     405       405       405       405       405       405
resource-rule-delete                                       POST   login     403       403       redirect  403       403       redirect
my-requests                                                GET    login     ok        ok        ok        ok        ok        ok
my-requests                                                POST   login     405       405       405       405       405       405
request-new                                                GET    login     ok        ok        ok        ok        ok        ok
request-new                                                POST   login     redirect  redirect  redirect  redirect  redirect  redirect
request-detail                                             GET    login     404       ok        ok        ok        ok        ok
request-detail                                             POST   login     405       405       405       405       405       405
request-decide                                             GET    login     405       405       405       405       405       405
request-decide                                             POST   login     404       refused   redirect  403       403       redirect
request-cancel                                             GET    login     405       405       405       405       405       405
request-cancel                                             POST   login     404       redirect  403       403       403       redirect
approvals                                                  GET    login     ok        ok        ok        ok        ok        ok
approvals                                                  POST   login     405       405       405       405       405       405
my-access                                                  GET    login     ok        ok        ok        ok        ok        ok
my-access                                                  POST   login     405       405       405       405       405       405
grant-revoke                                               GET    login     404       ok        ok        403       403       ok
grant-revoke                                               POST   login     404       redirect  redirect  403       403       redirect
grant-extend                                               GET    login     404       ok        ok        ok        403       ok
grant-extend                                               POST   login     404       redirect  redirect  redirect  403       redirect

# The API: anonymous callers get 401 with a Bearer challenge
access-api:me                                              GET    401       ok        ok        ok        ok        ok        ok
access-api:me                                              POST   401       405       405       405       405       405       405
access-api:resource-list                                   GET    401       ok        ok        ok        ok        ok        ok
access-api:resource-list                                   POST   401       405       405       405       405       405       405
access-api:resource-detail                                 GET    401       ok        ok        ok        ok        ok        ok
access-api:resource-detail                                 POST   401       405       405       405       405       405       405
access-api:grant-list                                      GET    401       ok        ok        ok        ok        ok        ok
access-api:grant-list                                      POST   401       405       405       405       405       405       405
access-api:grant-detail                                    GET    401       404       ok        ok        ok        ok        ok
access-api:grant-detail                                    POST   401       405       405       405       405       405       405
access-api:grant-extend                                    GET    401       405       405       405       405       405       405
access-api:grant-extend                                    POST   401       404       ok        ok        ok        403       ok
access-api:grant-revoke                                    GET    401       405       405       405       405       405       405
access-api:grant-revoke                                    POST   401       404       ok        ok        403       403       ok
access-api:access-request-list                             GET    401       ok        ok        ok        ok        ok        ok
access-api:access-request-list                             POST   401       ok        ok        ok        ok        ok        ok
access-api:access-request-detail                           GET    401       404       ok        ok        ok        ok        ok
access-api:access-request-detail                           POST   401       405       405       405       405       405       405
access-api:access-request-approve                          GET    401       405       405       405       405       405       405
access-api:access-request-approve                          POST   401       404       409       ok        403       403       ok
access-api:access-request-cancel                           GET    401       405       405       405       405       405       405
access-api:access-request-cancel                           POST   401       404       ok        403       403       403       ok
access-api:access-request-deny                             GET    401       405       405       405       405       405       405
access-api:access-request-deny                             POST   401       404       409       ok        403       403       ok
access-api:approval-list                                   GET    401       ok        ok        ok        ok        ok        ok
access-api:approval-list                                   POST   401       405       405       405       405       405       405
access-api:api-token-list                                  GET    401       ok        ok        ok        ok        ok        ok
access-api:api-token-list                                  POST   401       ok        ok        ok        ok        ok        ok
access-api:api-token-revoke                                GET    401       405       405       405       405       405       405
access-api:api-token-revoke                                POST   401       404       ok        404       404       404       404
audit-api:audit-event-list                                 GET    401       403       403       403       403       ok        ok
audit-api:audit-event-list                                 POST   401       403       403       403       403       405       405
audit-api:audit-event-detail                               GET    401       403       403       403       403       ok        ok
audit-api:audit-event-detail                               POST   401       403       403       403       403       405       405
api-schema                                                 GET    401       ok        ok        ok        ok        ok        ok
api-schema                                                 POST   401       405       405       405       405       405       405
api-docs                                                   GET    login     ok        ok        ok        ok        ok        ok
api-docs                                                   POST   login     405       405       405       405       405       405
"""
# fmt: on


def _parse(table: str) -> dict[str, dict[str, dict[str, str]]]:
    rows: dict[str, dict[str, dict[str, str]]] = {}
    for number, line in enumerate(table.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, method, *cells = line.split()
        if len(cells) != len(PERSONAS):
            raise ValueError(f"TABLE line {number}: {len(cells)} outcomes for {len(PERSONAS)}")
        unknown = set(cells) - OUTCOMES
        if unknown:
            raise ValueError(f"TABLE line {number}: unknown outcomes {unknown}, see OUTCOMES")
        if method in rows.get(key, {}):
            raise ValueError(f"TABLE line {number}: a second row for {method} {key}")
        rows.setdefault(key, {})[method] = dict(zip(PERSONAS, cells, strict=True))
    return rows


MATRIX = _parse(TABLE)


def known_bugs(key: str, method: str) -> dict[str, str]:
    """The known bugs of one row, by persona."""
    return {p: bug for (k, m, p), bug in KNOWN_BUGS.items() if (k, m) == (key, method)}


def format_row(key: str, method: str, outcomes: dict[str, str]) -> str:
    """A row as TABLE writes it."""
    cells = "".join(f"{outcomes[p]:<{max(len(p), 9) + 1}}" for p in PERSONAS[:-1])
    return f"{key:<58} {method:<6} {cells}{outcomes[PERSONAS[-1]]}"
