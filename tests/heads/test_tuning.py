import numpy as np
import optuna

from hacknip_ase.heads import MODNetHead
from hacknip_ase.heads.tuning import StopWhenStale, tune_modnet


def test_search_stops_after_ten_stale_trials():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    values = iter([5.0, 4.0, 3.0] + [3.5] * 100)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda trial: next(values), n_trials=100, callbacks=[StopWhenStale(10)])
    assert len(study.trials) == 13 and study.best_trial.number == 2


def test_tune_modnet_searches_the_paper_space(embeddings, alloys, split):
    train, _ = split
    X, y = embeddings[train][:, 3], alloys[1][train]
    head, study = tune_modnet(X, y, n_trials=2, base=MODNetHead(epochs=20, validation_fraction=0.0))
    assert len(study.trials) == 2
    for trial in study.trials:
        p = trial.params
        assert p["batch_size"] in (16, 32, 128) and 1e-4 <= p["learning_rate"] <= 1e-2
        assert 50 <= p["n_features"] <= 64 and 1 <= p["depth"] <= 4 and 32 <= p["width"] <= 256
    assert head.get_params()["width"] == study.best_params["width"] and head.predict(X).shape == (len(y),)
    assert np.isfinite(study.best_value)
