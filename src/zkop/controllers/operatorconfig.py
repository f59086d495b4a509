"""Reports, in each OperatorConfig's status, which replica leads and in which epoch, and records
an event (``Leading``) when a new term takes over, so ``kubectl get events`` shows who led when.

Writes only when something changed, so a quiet system makes no writes.
"""

from __future__ import annotations

from zkop.api import OperatorConfig
from zkop.runtime.controller import Context, Controller
from zkop.runtime.result import Request, Result
from zkop.store import NotFound


class OperatorConfigReconciler:
    async def reconcile(self, request: Request, ctx: Context) -> Result:
        try:
            obj = await ctx.store.get("OperatorConfig", request.namespace, request.name)
        except NotFound:
            return Result()
        assert isinstance(obj, OperatorConfig)
        status = obj.status.model_copy(
            update={"observed_generation": obj.metadata.generation, "leader": ctx.identity, "epoch": ctx.epoch}
        )
        if status != obj.status:
            await ctx.store.update_status(obj.model_copy(update={"status": status}))
            if (obj.status.leader, obj.status.epoch) != (ctx.identity, ctx.epoch):
                await ctx.event(obj, "Normal", "Leading", f"{ctx.identity} leads in epoch {ctx.epoch}")
        return Result()


def controller(namespace: str | None = None) -> Controller:
    return Controller("operatorconfig", "OperatorConfig", OperatorConfigReconciler(), namespace=namespace)
