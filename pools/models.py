"""Audit mirror of the pool configuration, and the durable floor of the leader's fencing epoch."""

from __future__ import annotations

from django.db import models
from django.db.models import Max


class PoolConfigVersion(models.Model):
    """One version of the pool configuration as it was written to Redis, with what changed."""

    version = models.PositiveBigIntegerField(db_index=True)
    epoch = models.PositiveBigIntegerField(db_index=True)
    generated_by = models.CharField(max_length=150)
    generated_at = models.DateTimeField(db_index=True)
    pools = models.JSONField(default=list)
    change = models.JSONField(default=dict, help_text="Pools added and removed by this version.")

    class Meta:
        ordering = ["-generated_at", "-version"]
        constraints = [models.UniqueConstraint(fields=["epoch", "version"], name="pool_version_once_per_epoch")]

    def __str__(self) -> str:
        return f"v{self.version} (epoch {self.epoch})"

    @classmethod
    def highest_version(cls) -> int:
        return cls.objects.aggregate(top=Max("version"))["top"] or 0


class LeaderEpoch(models.Model):
    """The highest fencing epoch ever granted, kept here so it survives Redis losing its data."""

    name = models.CharField(primary_key=True, max_length=50)
    epoch = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}: {self.epoch}"

    @classmethod
    def floor(cls, name: str = "pools") -> int:
        return cls.objects.filter(name=name).values_list("epoch", flat=True).first() or 0

    @classmethod
    def raise_to(cls, epoch: int, name: str = "pools") -> None:
        """Record `epoch` as granted; a conditional update, so the mark never goes down."""
        cls.objects.get_or_create(name=name)
        cls.objects.filter(name=name, epoch__lt=epoch).update(epoch=epoch)
