"""Node tokens: issued with the secret shown once, revoked (closing the sockets that use them), never deleted."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from access.admin import CredentialAdmin, CredentialForm
from nodes import services
from nodes.admin.live import (
    REDIS_DOWN,
    _actor,
    _for_each,
)
from nodes.models import NodeToken
from nodes.tokens import revoke_token

# --- node tokens ------------------------------------------------------------------------------------------------


class NodeTokenForm(CredentialForm):
    class Meta:
        model = NodeToken
        fields = ("name", "node_id", "expires_at")

    def clean_node_id(self) -> str:
        node_id = self.cleaned_data.get("node_id", "")
        # A binding the register path would refuse makes a token that can never be used.
        if node_id and not services.NODE_ID_RE.match(node_id):
            raise forms.ValidationError("A node id holds only letters, digits and . _ : - (at most 64).")
        return node_id


@admin.register(NodeToken)
class NodeTokenAdmin(CredentialAdmin):
    secret_label = "node token"
    secret_hint = "Nodes connect to ws://<host>/ws/node?token=<token> (or send it as a Bearer header)."
    form = NodeTokenForm
    list_display = ("id", "name", "bound_node", "created_at", "expires_at", "revoked_at", "last_used_at")
    search_fields = ("id", "name", "node_id")
    add_fields = ("name", "node_id", "expires_at")
    # Binding and expiry are copied onto live connections at handshake, so editing them later would
    # not reach sockets already open: revoke and issue a new token instead.
    fixed_fields = ("node_id", "expires_at")

    @admin.display(description="bound node")
    def bound_node(self, token: NodeToken) -> str:
        return token.node_id or "any"

    def save_model(self, request: HttpRequest, obj: NodeToken, form: forms.ModelForm, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, plaintext = NodeToken.issue(
            obj.name, node_id=obj.node_id, expires_at=obj.expires_at, created_by=request.user
        )
        obj.pk = token.pk
        obj.refresh_from_db()
        self.remember_secret(request, plaintext)

    @admin.action(
        description="Revoke selected tokens (closes the sockets that use them)", permissions=["change"]
    )
    def revoke(self, request: HttpRequest, queryset: QuerySet[NodeToken]) -> None:
        already = set(queryset.filter(revoked_at__isnull=False).values_list("id", flat=True))
        ids = list(queryset.values_list("id", flat=True))
        actor = _actor(request)
        # Already revoked tokens go through the service too: it re-flags their live nodes in Redis.
        outcomes = _for_each(lambda token_id: revoke_token(token_id, actor), ids)
        done = [
            f"{token_id} ({told} live connection{'s' if told != 1 else ''} closed)"
            for token_id, told in outcomes.items()
            if isinstance(told, int) and token_id not in already
        ]
        if done:
            messages.success(request, f"Revoked: {', '.join(done)}")
        if already:
            messages.info(request, f"Already revoked: {', '.join(sorted(already))}")
        failed = [token_id for token_id, outcome in outcomes.items() if outcome is REDIS_DOWN]
        if failed:
            # The database update runs before Redis is touched, so these are revoked for new handshakes.
            messages.error(
                request,
                "Revoked in the database, but live connections could not be closed (Redis unavailable): "
                f"{', '.join(failed)}. Run the action again once Redis is back.",
            )
