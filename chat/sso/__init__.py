"""Single sign-on with an OpenID Connect provider (mozilla-django-oidc): who a
sign-in is (`accounts`), the checks on what the provider answers (`backend`), and
the pages around it (`views`)."""
