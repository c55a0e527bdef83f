from django.apps import AppConfig


class PoolsConfig(AppConfig):
    name = "pools"

    def ready(self) -> None:
        from nodes import reactions
        from pools import services

        # nodes never imports pools (apps depend one way); it calls these through nodes.reactions.
        reactions.attach_pools(
            reactions.PoolReactions(
                place_node=services.place_node,
                wants_membership=services.wants_membership,
                resync_node=services.resync_node,
            )
        )
