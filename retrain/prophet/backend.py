"""Prophet's ``stan_backend`` that fits in process (:mod:`retrain.prophet.inprocess`), with
cmdstan for logistic growth and for any fit the solver does not settle.

Apart from the solver because importing ``prophet`` costs ~1.7 s of CPU (matplotlib through
its plotting module): the kernel's modules, which the coordinator imports to unpickle a
task's results, import the solver, not this.
"""

from collections import OrderedDict
from typing import Any

import numpy as np
from prophet.models import CmdStanPyBackend, IStanBackend

from retrain.prophet.inprocess import LOGISTIC, MapProblem, optimize

__all__ = ["InProcessBackend", "attach_backend"]


class InProcessBackend(IStanBackend):
    """An ``IStanBackend`` for ``Prophet.stan_backend``; see the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self._cmdstan: CmdStanPyBackend | None = None
        self.fallbacks = 0

    @staticmethod
    def get_type() -> str:
        return "INPROCESS"

    def load_model(self) -> None:
        return None

    def _fallback(self) -> CmdStanPyBackend:
        if self._cmdstan is None:
            self._cmdstan = CmdStanPyBackend()
        self.fallbacks += 1
        return self._cmdstan

    def fit(
        self, stan_init: dict[str, Any], stan_data: dict[str, Any], **kwargs: Any
    ) -> dict[str, Any]:
        if int(stan_data["trend_indicator"]) == LOGISTIC:
            return self._fallback().fit(stan_init, stan_data, **kwargs)
        init = stan_init
        if "init" in kwargs:
            init = CmdStanPyBackend.sanitize_custom_inits(stan_init, kwargs["init"])
        problem = MapProblem(stan_data)
        found = optimize(problem, init)
        if found is None:
            return self._fallback().fit(stan_init, stan_data, **kwargs)
        k, m, delta, sigma, beta, lp = found
        params: dict[str, Any] = OrderedDict(
            lp__=np.array([[lp]]),
            k=np.array([[k]]),
            m=np.array([[m]]),
            delta=delta.reshape(1, -1),
            sigma_obs=np.array([[sigma]]),
            beta=beta.reshape(1, -1),
            trend=problem.trend(k, m, delta).reshape(1, -1),
        )
        self.stan_fit = None
        return params

    def sampling(
        self, stan_init: dict[str, Any], stan_data: dict[str, Any], samples: int, **kwargs: Any
    ) -> dict[str, Any]:
        return self._fallback().sampling(stan_init, stan_data, samples, **kwargs)


def attach_backend(model: Any) -> None:
    """Make a Prophet model fit in process (call before ``fit``)."""
    model.stan_backend = InProcessBackend()
