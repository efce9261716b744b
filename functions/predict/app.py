"""Predict service: a buy/sell signal per symbol from its current model, the stored history, and
the rankings of universes (computed after the close by the retrain function, read here).

Serving imports numpy and stockml's serving modules only: stockml.signals, which predicts, and
the two it writes through (stockml.prediction_store, stockml.training_lease). A symbol with no
trained model answers 202 with Retry-After while one training runs in the retrain function
(started by the first such request, single-flight across requests and instances), unless
TRAIN_ON_DEMAND=off (then 404). Trainings so started are capped per hour, stack-wide and per
client address (stockpred.predictions.training_budget): over the cap, 429 with Retry-After, and
nothing is started.
"""

from __future__ import annotations

from chalice import Chalice, Response

from stockml import prediction_store, signals, training_lease, universe_ranks
from stockml.registry import ArtifactRejected, ModelNotFound, RankingNotFound
from stockpred import config
from stockpred.api.edge import (
    ApiError,
    client_address,
    install,
    json_response,
    market_errors,
    query_int,
    symbol_param,
)
from stockpred.market import market_data
from stockpred.market.market_data import History
from stockpred.observability import logs, metrics
from stockpred.predictions import training_budget, universes
from stockpred.realtime import rooms

app = Chalice(app_name="predict")
log = install(app, "predict")


def _budget_spent(symbol: str, spent: training_budget.BudgetSpent) -> ApiError:
    wait = max(int(spent.retry_after_s), 1)
    whose = "from one address" if spent.scope == "client" else "for everyone"
    return ApiError(429, f"No model for {symbol}, and the training budget is spent: requests may "
                         f"start {spent.limit} trainings an hour {whose}; ask again in {wait} s",
                    {"Retry-After": str(wait)})


def _history(symbol: str) -> History:
    with market_errors():
        return market_data.default().history(symbol)[0]


@app.route("/api/predict/{symbol}", methods=["GET"])
def predict(symbol: str) -> Response:
    symbol = symbol_param(symbol)
    hist = _history(symbol)
    try:
        body, created = signals.predict(hist, train_on_demand=config.load().train_on_demand,
                                        client=client_address(app.current_request))
    except training_lease.TrainingStarted as training:
        if training.started:
            metrics.count("TrainingsStarted")
        wait = training_lease.TRAINING_RETRY_AFTER_S
        return json_response(202, {
            "symbol": symbol, "status": "training",
            "message": f"No model for {symbol} yet: one is being trained, ask again in about {wait} s",
            "retry_after": wait, "started_by_this_request": training.started,
        }, {"Retry-After": str(wait)})
    except training_budget.BudgetSpent as spent:
        raise _budget_spent(symbol, spent) from None
    except signals.NotEnoughHistory as exc:
        raise ApiError(422, f"Cannot predict {symbol}: {exc}") from None
    except ModelNotFound:
        raise ApiError(404, f"No model trained for {symbol}: run `stockpred train {symbol}`") from None
    except ArtifactRejected as exc:
        log.error("model artifact refused", extra={"fields": {"symbol": symbol, "reason": str(exc)}})
        raise ApiError(503, f"Model artifact refused: {exc}") from None
    except signals.HistoryBehindModel as exc:
        log.warning("history behind the model", extra={"fields": {"symbol": symbol, "reason": str(exc)}})
        raise ApiError(503, f"Cannot predict {symbol}: {exc}", {"Retry-After": "60"}) from None
    body["universe_ranks"] = universe_ranks.ranks_of(symbol)
    metrics.count("PredictionsServed")
    # Subscribers see every prediction served; `new` tells a first one from a stored one re-read,
    # `correlation_id` the request that caused it (a page ignores the echo of its own).
    rooms.publish_to_room(symbol, {"type": "prediction", "new": created,
                                      "correlation_id": logs.correlation_id.get(), **body})
    return json_response(200, body)


@app.route("/api/universes/{name}/ranking", methods=["GET"])
def universe_ranking(name: str) -> Response:
    try:
        return json_response(200, universe_ranks.ranking(name))
    except universes.UniverseError as exc:
        raise ApiError(400, str(exc)) from None
    except universes.UnknownUniverse:
        raise ApiError(404, f"No universe {name}: GET /api/universes lists them") from None
    except RankingNotFound:
        raise ApiError(404, f"Universe {name} has no ranking yet: run `stockpred train-universe {name}`, "
                            "or wait for the retrain after the close") from None


@app.route("/api/predictions/{symbol}", methods=["GET"])
def predictions(symbol: str) -> Response:
    symbol = symbol_param(symbol)
    limit = query_int(app.current_request.query_params, "limit", 30, 1, 500)
    hist = _history(symbol)
    return json_response(200, {"symbol": symbol,
                               "predictions": prediction_store.history(symbol, hist.bars, limit)})
