"""The served signatures' contract, on a tiny untrained model saved and loaded as the Pusher's:
shapes (empty batches included), unknown users and titles, extreme request times, bad inputs."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from components import features, stack
from components.trainer import histories as histories_lib
from components.trainer import model as model_lib
from components.trainer import serving, train
from components.trainer.catalogue import Catalogue
from components.trainer.conftest import serialize
from components.trainer.neighbourhood import ItemNeighbourhood
from pipeline import configs

TOP_K = 5
TITLES = [f"Title {i} (1990)".encode() for i in range(40)]  # ScaNN needs at least 16
CATALOGUE_ONLY = b"Never Rated (2000)"  # in the catalogue, not in any rating
BLEND = (0.5, 0.75, 0.25)  # the served rating: 0.5 * the head's + 0.75 * the neighbours' + 0.25


def _ratings() -> list[dict]:
    rng = np.random.default_rng(0)
    return [{features.USER_ID: [str(user).encode()],
             features.MOVIE_TITLE: [TITLES[(user * 3 + i) % len(TITLES)]],
             features.MOVIE_GENRES: [int(i % 3)], features.RATING: [float(rng.integers(1, 6))],
             features.TIMESTAMP: [1_000_000 + 3_600 * i]}
            for user in range(1, 5) for i in range(6)]


def _build_module(analyze_ratings, ratings: list[dict], titles: list[bytes],
                  weights_seed: int | None = None, history_sum_precision: str = "auto"):
    """(the serving module of an untrained adopted model, unsaved; the users' histories; the
    movie vocabulary). With `weights_seed`, its trainable weights are drawn at random:
    untrained, every title embeds alike and scores the same."""
    modules, histories, movies = _build_modules(analyze_ratings, ratings, titles, weights_seed,
                                                history_sum_precision=history_sum_precision)
    return modules[0], histories, movies


def _build_modules(analyze_ratings, ratings: list[dict], titles: list[bytes],
                   weights_seed: int | None = None, cold_start_days: tuple[float, ...] = (0.0,),
                   unstored_users: tuple[bytes, ...] = (), history_sum_precision: str = "auto"):
    """_build_module's, with one serving module of the same model for each of
    `cold_start_days` (as the config's cold_start_popularity_days; 0: no cold-start rule).
    `unstored_users`: in the vocabulary, their ratings left out of the histories (as the
    validation slice's users with no earlier rating are when tuning). `history_sum_precision`:
    the model's, in training."""
    transform_output, records = analyze_ratings(ratings)
    users = transform_output.vocabulary_by_name(features.USER_VOCABULARY)
    movies = transform_output.vocabulary_by_name(features.MOVIE_VOCABULARY)
    inputs = train.model_inputs(tf.data.Dataset.from_tensor_slices(records), transform_output)
    stored = ~np.isin(inputs[features.USER_INDEX], [users.index(u) for u in unstored_users])
    histories = train.user_histories({name: column[stored] for name, column in inputs.items()},
                                     len(users))
    catalogue = Catalogue.from_titles(
        np.array(titles, dtype=object),
        tf.ragged.constant([[i % 3] for i in range(len(titles))], dtype=tf.int64),
        transform_output)
    config = dataclasses.replace(configs.MODEL, embedding_dim=8, top_k=TOP_K,
                                 history_sum_precision=history_sum_precision)
    neighbours = ItemNeighbourhood.fit(histories, len(movies), size=3, history_size=8,
                                       shrinkage=1.0, max_titles=len(movies))
    recommender = model_lib.build_model(len(users), len(movies), config,
                                        catalogue.genres_by_movie_index(),
                                        user_histories=histories)
    # Unbounded: the untrained head predicts near 0, which the stars' range would clip to 1
    # for every rating, and the tests that compare ratings would compare nothing.
    def serving_module(cold_start_days: float = 0.0):
        return serving.RecommenderModule(
            transform_output, recommender.user_tower, recommender.movie_tower,
            recommender.rating_head, catalogue, catalogue.rated_rows(histories), TOP_K,
            rating_range=(-np.inf, np.inf), neighbourhood=neighbours, blend=BLEND,
            cold_start=catalogue.cold_start(histories, cold_start_days, shrinkage=2.0)
            if cold_start_days else None)

    if weights_seed is not None:
        serving_module()  # builds the weights drawn next
        rng = np.random.default_rng(weights_seed)
        for weight in recommender.trainable_weights:
            value = weight.numpy()
            weight.assign(rng.normal(size=value.shape).astype(value.dtype))
    return [serving_module(days) for days in cold_start_days], histories, movies


@pytest.fixture(scope="module")
def module(analyze_ratings):
    return _build_module(analyze_ratings, _ratings(), TITLES + [CATALOGUE_ONLY])


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("model")


@pytest.fixture(scope="module")
def model(export_dir, module):
    return _saved_and_loaded(module[0], str(export_dir))


def _saved_and_loaded(module: serving.RecommenderModule, export_dir: str):
    """The module as the Pusher pushes it and the server loads it."""
    module.save(export_dir)
    stack.register_scann_ops()
    return tf.saved_model.load(export_dir)


def _strings(*values):
    return tf.constant(values, tf.string, shape=[len(values)])


def _times(*values):
    return tf.constant(values, tf.int64, shape=[len(values)])


def test_every_signature_answers_an_empty_batch_with_its_usual_shapes(model):
    no_users, no_times = _strings(), _times()
    top_k_signatures = {"serving_default": {}, "unrated": {}, "brute_force": {},
                        "at_time": {"timestamp": no_times}}
    for name, extra in top_k_signatures.items():
        outputs = model.signatures[name](user_id=no_users, **extra)
        assert outputs["titles"].shape == outputs["scores"].shape == (0, TOP_K), name
    for name, extra in {"catalogue_scores": {}, "catalogue_scores_at_time":
                        {"timestamp": no_times}}.items():
        outputs = model.signatures[name](user_id=no_users, **extra)
        assert outputs["scores"].shape == (0, len(TITLES) + 1), name
    for name, extra in {"rating": {}, "rating_at_time": {"timestamp": no_times}}.items():
        outputs = model.signatures[name](user_id=no_users, movie_title=_strings(), **extra)
        assert {key: value.shape for key, value in outputs.items()} == {
            "rating": (0,), "known_user": (0,), "known_title": (0,)}, name
    assert model.signatures["evaluation"](examples=_strings())["squared_error"].shape == (0,)
    outputs = model.signatures["at_time_with_recent"](
        user_id=no_users, timestamp=no_times, recent_titles=tf.zeros([0, 0], tf.string),
        recent_timestamps=tf.zeros([0, 0], tf.int64), recent_ratings=tf.zeros([0, 0]))
    assert outputs["titles"].shape == outputs["scores"].shape == (0, TOP_K)


def test_ratings_carried_by_the_request_count_as_the_stored_ones_they_stand_for(module):
    """User 1's ratings before time t leave the stored history and come with the request
    instead: the answer equals `at_time` on the full history."""
    module, histories, movies = module
    user = int(module._user_index(_strings(b"1"))[0])
    user_movies, user_times, user_ratings = histories.user(user)
    t = int(user_times[4])  # four ratings before t, two at or after it
    request = {"user_id": _strings(b"1"), "timestamp": _times(t)}
    full = module.recommend_at_time(**request)
    full_scores = module.score_catalogue_at_time(**request)["scores"]
    full_rating = module.predict_rating_at_time(**request, movie_title=_strings(movies[0]))

    users = histories.user_index_per_rating()
    kept = ~((users == user) & (histories.times < t))
    module.user_tower.history.assign(histories_lib.UserHistories.from_ratings(
        users[kept], histories.movies[kept], histories.times[kept], histories.ratings[kept],
        histories.num_users - 1))
    try:
        before = user_times < t
        recent = {
            "recent_titles": tf.constant([[movies[m] for m in user_movies[before]] + [b""]]),
            "recent_timestamps": tf.constant([list(user_times[before]) + [0]], tf.int64),
            "recent_ratings": tf.constant([list(user_ratings[before]) + [0.0]])}
        with_recent = module.recommend_with_recent(**request, **recent)
        scores_with_recent = module.score_catalogue_with_recent(**request, **recent)["scores"]
        rating_with_recent = module.predict_rating_with_recent(
            **request, **recent, movie_title=_strings(movies[0]))
        without = module.recommend_at_time(**request)
    finally:
        module.user_tower.history.assign(histories)
    assert with_recent["titles"].numpy().tolist() == full["titles"].numpy().tolist()
    np.testing.assert_allclose(with_recent["scores"], full["scores"], rtol=1e-5)
    assert not np.allclose(without["scores"], full["scores"], rtol=1e-3)
    np.testing.assert_allclose(scores_with_recent, full_scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rating_with_recent["rating"], full_rating["rating"], rtol=1e-5)


def test_the_same_signatures_answer_a_batch_with_k_titles_each(model):
    users = _strings(b"1", b"2", b"no-such-user")
    for name in ("serving_default", "unrated", "brute_force"):
        outputs = model.signatures[name](user_id=users)
        assert outputs["titles"].shape == outputs["scores"].shape == (3, TOP_K), name
    unrated = model.signatures["unrated"](user_id=users)["titles"].numpy()
    rated_by_user_1 = {row[features.MOVIE_TITLE][0] for row in _ratings()
                       if row[features.USER_ID] == [b"1"]}
    assert not set(unrated[0]) & rated_by_user_1


def test_the_user_embedding_scores_the_catalogue_as_the_model_does(model):
    users = _strings(b"1", b"2", b"no-such-user")
    embedding = model.signatures["user_embedding"](user_id=users)["embedding"].numpy()
    catalogue = model.signatures["catalogue_scores"](user_id=users)["scores"].numpy()
    assert embedding.shape == (3, model.movie_embeddings.shape[1])
    np.testing.assert_allclose(embedding @ model.movie_embeddings[:-1].numpy().T, catalogue,
                               rtol=1e-5, atol=1e-5)
    assert model.signatures["user_embedding"](user_id=_strings())["embedding"].shape == (
        0, embedding.shape[1])


def test_the_export_holds_the_keras_models_variables_not_the_models(model, export_dir):
    """Keras layers in the export would have it trace and serialize each layer's call
    functions for Keras' own loader, which nothing loads the model with (3 of ml-100k's
    7.7 s export)."""
    saved = saved_model_pb2.SavedModel.FromString((export_dir / "saved_model.pb").read_bytes())
    kinds = {node.user_object.identifier for node in saved.meta_graphs[0].object_graph_def.nodes
             if node.WhichOneof("kind") == "user_object"}
    assert kinds and not [kind for kind in kinds if "keras" in kind]


def test_each_served_rating_is_stored_in_twenty_bytes(model, module):
    """Its key (user and time) int64, its movie index, rating and catalogue row 4 bytes each:
    at 25 M ratings every byte a rating is 25 MB of the export and of the server's memory."""
    history = model.history
    assert [history.keys.dtype, history.movies.dtype, history.ratings.dtype,
            model.rated_row_values.dtype] == [tf.int64, tf.int32, tf.float32, tf.int32]
    np.testing.assert_array_equal(history.movies, module[0].user_tower.history.movies)


def test_the_served_rating_blends_the_head_and_the_neighbourhood_model(model, module):
    """Every rating signature of the pushed model: BLEND of the rating head's rating (from the
    user's rating vector) and the neighbourhood model's (from the stored history)."""
    module, histories, movies = module
    users, titles = _strings(b"1", b"2", b"3", b"4"), _strings(*(movies[i] for i in (0, 3, 5, 7)))
    user_index = module._user_index(users)
    rows = module.title_to_row.lookup(titles)
    _, rating_vector = module._tower_vectors(user_index, _times(*[model_lib.LATEST_TIME] * 4))
    head = module.rating_head([rating_vector, tf.gather(module.movie_embeddings, rows)])
    neighbours = module.neighbourhood.rate(module.user_tower.history, user_index,
                                           tf.gather(module.movie_index_of_row, rows))
    expected = BLEND[0] * head + BLEND[1] * neighbours + BLEND[2]
    served = model.signatures["rating"](user_id=users, movie_title=titles)["rating"]
    np.testing.assert_allclose(served, expected, rtol=1e-5)
    assert not np.allclose(neighbours, head, atol=0.1)
    at_time = model.signatures["rating_at_time"](
        user_id=users, movie_title=titles, timestamp=_times(*[model_lib.LATEST_TIME] * 4))
    np.testing.assert_allclose(at_time["rating"], expected, rtol=1e-5)


def test_a_model_trained_with_bfloat16_history_sums_is_served_in_float32(analyze_ratings,
                                                                        tmp_path):
    module, _, _ = _build_module(analyze_ratings, _ratings(), TITLES,
                                 history_sum_precision="bfloat16")
    assert not module.user_tower.history_sums_in_bfloat16
    module.save(str(tmp_path))
    saved = saved_model_pb2.SavedModel.FromString((tmp_path / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    nodes = [*graph.node, *(node for function in graph.library.function
                            for node in function.node_def)]
    assert nodes
    bfloat16 = tf.bfloat16.as_datatype_enum
    assert not [node.name for node in nodes if any(
        value.type == bfloat16 or bfloat16 in value.list.type for value in node.attr.values())]


def test_users_are_indexed_as_tfts_transform_indexes_them(module, analyze_ratings):
    """The served lookup (a table of TFT's vocabulary) against TFT's transform of the same ids
    (the same ratings analysed again: the vocabulary is deterministic), unknown ids included."""
    transform_output, _ = analyze_ratings(_ratings())
    users = _strings(b"1", b"4", b"2", b"no-such-user", b"", b"3")
    by_tft = transform_output.transform_features_layer()(
        {features.USER_ID: tf.reshape(users, [-1, 1])})[features.USER_INDEX]
    served = module[0]._user_index(users).numpy().tolist()
    assert served == by_tft.numpy().tolist()
    assert served[3] == served[4] == transform_output.vocabulary_size_by_name(
        features.USER_VOCABULARY)


def test_rating_tells_known_users_and_titles_from_unknown_ones(model):
    outputs = model.signatures["rating"](
        user_id=_strings(b"1", b"1", b"1", b"no-such-user"),
        movie_title=_strings(TITLES[0], CATALOGUE_ONLY, b"Not In The Catalogue", TITLES[0]))
    assert outputs["known_title"].numpy().tolist() == [True, True, False, True]
    assert outputs["known_user"].numpy().tolist() == [True, True, True, False]
    assert np.isfinite(outputs["rating"].numpy()).all()


def test_request_times_beyond_the_range_are_clamped(model):
    users = _strings(b"1", b"1", b"1", b"1")
    extreme = _times(np.iinfo(np.int64).min, 0, np.iinfo(np.int64).max, model_lib.LATEST_TIME)
    scores = model.signatures["catalogue_scores_at_time"](user_id=users,
                                                         timestamp=extreme)["scores"].numpy()
    np.testing.assert_array_equal(scores[0], scores[1])
    np.testing.assert_array_equal(scores[2], scores[3])
    untimed = model.signatures["catalogue_scores"](user_id=users[:1])["scores"].numpy()
    np.testing.assert_allclose(scores[2], untimed[0], rtol=1e-6, atol=1e-6)
    ratings = model.signatures["rating_at_time"](
        user_id=users, movie_title=_strings(*[TITLES[0]] * 4), timestamp=extreme)["rating"]
    assert np.isfinite(ratings.numpy()).all()


@pytest.mark.parametrize("name, inputs, message", [
    ("serving_default", {"user_id": tf.constant([[b"1"]])},
     r"Shape of tensor user_id \[1,1\] is not compatible with expected shape \[\?\]"),
    ("brute_force", {"user_id": tf.constant(b"1")},
     r"Shape of tensor user_id \[\] is not compatible"),
    ("at_time", {"user_id": _strings(b"1", b"2"), "timestamp": _times(5)},
     "user_id and timestamp must have the same length"),
    ("rating", {"user_id": _strings(b"1"), "movie_title": tf.constant([[TITLES[0]]])},
     "Shape of tensor movie_title"),
    ("at_time_with_recent", {"user_id": _strings(b"1"), "timestamp": _times(5),
                             "recent_titles": tf.constant([[TITLES[0]]]),
                             "recent_timestamps": tf.constant([[1, 2]], tf.int64),
                             "recent_ratings": tf.constant([[4.0]])},
     "recent_titles, recent_timestamps and recent_ratings must have the same shape"),
    ("at_time_with_recent", {"user_id": _strings(b"1"), "timestamp": _times(5),
                             "recent_titles": tf.constant([[TITLES[0]]] * 2),
                             "recent_timestamps": tf.constant([[1]] * 2, tf.int64),
                             "recent_ratings": tf.constant([[4.0]] * 2)},
     "recent_titles must have a row for each user_id"),
])
def test_inputs_of_another_rank_or_length_are_refused_with_the_input_named(model, name,
                                                                           inputs, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        model.signatures[name](**inputs)


def test_unrated_answers_users_whose_history_outgrows_scanns_reordering(analyze_ratings):
    """ScaNN returns at most 1,000 titles; a user with 1,000 ratings needs 1,005 to leave 5
    unrated."""
    titles = [f"Title {i} (1990)".encode() for i in range(1_020)]
    assert serving.scann_parameters(len(titles))["num_reordering_candidates"] == 1_000
    ratings = [{features.USER_ID: [user], features.MOVIE_TITLE: [titles[i]],
                features.MOVIE_GENRES: [i % 3], features.RATING: [float(1 + i % 5)],
                features.TIMESTAMP: [1_000_000 + i]}
               for user, count in ((b"heavy", 1_000), (b"light", 3)) for i in range(count)]
    module, _, _ = _build_module(analyze_ratings, ratings, titles)
    outputs = module.recommend_unrated(_strings(b"heavy", b"light"))
    assert outputs["titles"].shape == outputs["scores"].shape == (2, TOP_K)
    assert not set(outputs["titles"].numpy()[0]) & set(titles[:1_000])
    assert not set(outputs["titles"].numpy()[1]) & set(titles[:3])


@pytest.fixture(scope="module")
def random_model(tmp_path_factory, analyze_ratings):
    module, _, _ = _build_module(analyze_ratings, _ratings(), TITLES + [CATALOGUE_ONLY],
                                 weights_seed=0)
    return _saved_and_loaded(module, str(tmp_path_factory.mktemp("random_model")))


def test_evaluation_ranks_each_held_out_title_as_the_served_scores_do(random_model):
    """The `evaluation` signature against the other signatures' answers: each held-out title's
    rank among the whole catalogue and among the titles its user did not rate, its predicted
    rating. A title outside the catalogue ranks last; an unknown user has rated nothing."""
    catalogue = TITLES + [CATALOGUE_ONLY]
    rated = {user: {row[features.MOVIE_TITLE][0] for row in _ratings()
                    if row[features.USER_ID] == [user]} for user in (b"1", b"2", b"3")}
    # Every title for two users (rated ones included), at times within their histories.
    held_out = [(user, title, float(1 + i % 5), 1_000_000 + 1_000 * i)
                for user in (b"1", b"2") for i, title in enumerate(catalogue)]
    held_out += [(b"3", b"Not In The Catalogue", 3.0, 1_020_000),
                 (b"no-such-user", TITLES[7], 1.0, 1_000_000)]
    examples = serialize([{features.USER_ID: [user], features.MOVIE_TITLE: [title],
                           features.MOVIE_GENRES: [1], features.RATING: [stars],
                           features.TIMESTAMP: [time]} for user, title, stars, time in held_out])
    model = random_model
    outputs = {name: value.numpy() for name, value in model.signatures["evaluation"](
        examples=tf.constant(examples)).items()}

    users, titles, stars, times = (list(column) for column in zip(*held_out, strict=True))
    scores = model.signatures["catalogue_scores_at_time"](
        user_id=_strings(*users), timestamp=_times(*times))["scores"].numpy()
    ratings = model.signatures["rating_at_time"](
        user_id=_strings(*users), movie_title=_strings(*titles),
        timestamp=_times(*times))["rating"].numpy()
    ranks = []
    for i, (user, title) in enumerate(zip(users, titles, strict=True)):
        unrated = np.array([t not in rated.get(user, set()) for t in catalogue])
        if title in catalogue:
            better = scores[i] > scores[i, catalogue.index(title)]
        else:
            better = np.ones(len(catalogue), dtype=bool)
        ranks.append((better.sum(), (better & unrated).sum()))
        for k in (1, 5, 10):
            assert outputs[f"top_{k}_accuracy"][i] == (better.sum() < k), (i, k)
            assert outputs[f"top_{k}_accuracy_unrated"][i] == (
                (better & unrated).sum() < k), (i, k)
        # 41 titles: only a title outside the catalogue misses the top 100.
        assert outputs["top_100_accuracy"][i] == outputs["top_100_accuracy_unrated"][i] == (
            title in catalogue)
    # The two ranks differ across the thresholds tested.
    assert any(rank >= 5 > rank_unrated for rank, rank_unrated in ranks)
    np.testing.assert_allclose(outputs["rating"], ratings, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs["squared_error"], (ratings - np.array(stars)) ** 2,
                               rtol=1e-4, atol=1e-5)
    # 41 titles: ScaNN searches every leaf and reorders every candidate, so it finds the
    # exact top 10.
    np.testing.assert_array_equal(outputs["scann_recall_at_10"], 1.0)


def test_unseen_users_without_ratings_get_recent_popularity_and_the_others_the_model(
        analyze_ratings, tmp_path):
    """Users 5, 6 and 7 rated Title 30 in the last hour; the cold-start window (0.1 day) holds
    the last three hours. "nobody" is unseen in training; user 7 is in the vocabulary, without
    a stored rating (a user of the validation slice alone, when tuning)."""
    catalogue = TITLES + [CATALOGUE_ONLY]
    ratings = _ratings() + [
        {features.USER_ID: [user], features.MOVIE_TITLE: [TITLES[30]],
         features.MOVIE_GENRES: [0], features.RATING: [4.0], features.TIMESTAMP: [1_018_000]}
        for user in (b"5", b"6", b"7")]
    (plain, module), histories, _ = _build_modules(
        analyze_ratings, ratings, catalogue, weights_seed=0, cold_start_days=(0.0, 0.1),
        unstored_users=(b"7",))
    model = _saved_and_loaded(module, str(tmp_path))
    cold_scores = module.cold_start_scores.numpy()
    assert catalogue[int(np.argmax(cold_scores))] == TITLES[30]
    best = np.sort(cold_scores)[::-1][:TOP_K]

    users, times = _strings(b"nobody", b"1", b"2"), _times(1_020_000, 1_020_000, 1_005_000)
    answers = {name: (model.signatures[name](user_id=users, **extra),
                      getattr(plain, method)(users, *extra.values()))
               for name, method, extra in (
                   ("serving_default", "recommend", {}),
                   ("at_time", "recommend_at_time", {"timestamp": times}),
                   ("unrated", "recommend_unrated", {}),
                   ("brute_force", "recommend_exact", {}))}
    for name, (served, without_rule) in answers.items():
        titles, scores = served["titles"].numpy(), served["scores"].numpy()
        assert titles[0, 0] == TITLES[30], name
        np.testing.assert_allclose(scores[0], best, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(
            [cold_scores[catalogue.index(title)] for title in titles[0]], scores[0], rtol=1e-6)
        # Known users: the model's answers, as without the rule.
        assert titles[1:].tolist() == without_rule["titles"].numpy()[1:].tolist(), name
        np.testing.assert_allclose(scores[1:], without_rule["scores"][1:], rtol=1e-5)
    for name, extra in (("catalogue_scores", {}), ("catalogue_scores_at_time",
                                                  {"timestamp": times})):
        scores = model.signatures[name](user_id=users, **extra)["scores"].numpy()
        np.testing.assert_array_equal(scores[0], cold_scores, err_msg=name)
        assert not np.allclose(scores[1], cold_scores)

    def with_recent(title, time):
        request = {"user_id": _strings(b"nobody"), "timestamp": _times(1_020_000),
                   "recent_titles": tf.constant([[title]]),
                   "recent_timestamps": tf.constant([[time]], tf.int64),
                   "recent_ratings": tf.constant([[5.0]])}
        return (model.signatures["at_time_with_recent"](**request)["scores"].numpy()[0],
                plain.recommend_with_recent(**request)["scores"].numpy()[0])

    # No rating, a rating of a title outside the vocabulary (no one rated Title 0), or one
    # made after the request: still cold.
    for title, time in ((b"", 0), (TITLES[0], 1_000_000), (TITLES[3], 1_030_000)):
        np.testing.assert_allclose(with_recent(title, time)[0], best, rtol=1e-6)
    # A rating of a known title before the request: the model answers.
    served, without_rule = with_recent(TITLES[3], 1_000_000)
    np.testing.assert_allclose(served, without_rule, rtol=1e-5)
    assert not np.allclose(served, best)

    # Ratings: a cold request gets the title's shrunk mean (Title 30: 4 stars twice in the
    # stored histories, user 7's not stored; a title outside the catalogue: the mean of all);
    # the others the model's.
    rated_titles = _strings(TITLES[30], b"Not In The Catalogue")
    for name, extra in (("rating", {}), ("rating_at_time", {"timestamp": _times(1_020_000,
                                                                                1_020_000)})):
        cold_ratings = model.signatures[name](user_id=_strings(b"nobody", b"nobody"),
                                              movie_title=rated_titles, **extra)["rating"]
        mean = histories.mean_rating()
        np.testing.assert_allclose(cold_ratings, [mean + 2 * (4.0 - mean) / (2 + 2.0), mean],
                                   rtol=1e-5, err_msg=name)
    known = {"user_id": _strings(b"1", b"2"), "movie_title": rated_titles}
    np.testing.assert_allclose(model.signatures["rating"](**known)["rating"],
                               plain.predict_rating(**known)["rating"], rtol=1e-5)

    # The evaluation signature ranks the cold requests' held-out titles by the same scores,
    # and rates them as `rating` does.
    held_out = [TITLES[30], TITLES[0], CATALOGUE_ONLY]
    outputs = model.signatures["evaluation"](examples=tf.constant(serialize([
        {features.USER_ID: [b"nobody"], features.MOVIE_TITLE: [title],
         features.MOVIE_GENRES: [1], features.RATING: [3.0], features.TIMESTAMP: [1_020_000]}
        for title in held_out])))
    for i, title in enumerate(held_out):
        rank = (cold_scores > cold_scores[catalogue.index(title)]).sum()
        for k in (1, 5, 10, 50):
            assert outputs[f"top_{k}_accuracy"][i] == outputs[f"top_{k}_accuracy_unrated"][i] \
                == (rank < k), (title, k)
    np.testing.assert_array_equal(outputs["scann_recall_at_10"], 1.0)
    np.testing.assert_allclose(outputs["rating"], module.cold_start_ratings.numpy()[
        [catalogue.index(title) for title in held_out]], rtol=1e-6)

    # A user of the vocabulary without a stored rating is cold too; one with a rating is not.
    served = model.signatures["serving_default"](user_id=_strings(b"7", b"5"))["scores"].numpy()
    np.testing.assert_allclose(served[0], best, rtol=1e-6)
    assert not np.allclose(served[1], best)


def test_recall_counts_the_found_rows_among_the_exact_top_k():
    scores = tf.constant([[0.9, 0.8, 0.7, 0.6, 0.5],
                          [0.1, 0.2, 0.3, 0.4, 0.5]])
    found = tf.constant([[0, 1], [4, 0]])  # both of the best two; one of them
    np.testing.assert_allclose(serving.recall_at_k(scores, found).numpy(), [1.0, 0.5])
    found = tf.constant([[2, 4], [3, 4]])  # neither; both, in another order
    np.testing.assert_allclose(serving.recall_at_k(scores, found).numpy(), [0.0, 1.0])
    empty = serving.recall_at_k(tf.zeros([0, 5]), tf.zeros([0, 2], tf.int32))
    assert empty.shape == (0,)


def test_scann_index_of_a_catalogue_searched_whole_is_exact():
    rng = np.random.default_rng(0)
    candidates = rng.normal(size=(200, 8)).astype(np.float32)  # 14 leaves, all searched
    queries = rng.normal(size=(3, 8)).astype(np.float32)
    index = serving.ScannIndex(tf.constant(candidates), k=5)
    exact = queries @ candidates.T
    for k in (None, 12):
        scores, rows = index(tf.constant(queries), k=k)
        expected_rows = np.argsort(-exact, axis=1)[:, :k or 5]
        np.testing.assert_array_equal(rows.numpy(), expected_rows)
        np.testing.assert_allclose(scores.numpy(), np.take_along_axis(exact, expected_rows, 1),
                                   rtol=1e-5)


def test_scann_parameters_scale_with_the_catalogue():
    small, large = serving.scann_parameters(50), serving.scann_parameters(10_000)
    assert small["num_leaves"] == 7 and large["num_leaves"] == 100
    assert small["num_leaves_to_search"] == 7  # a small catalogue is searched whole
    assert serving.scann_parameters(1_664)["num_leaves_to_search"] == 31
    assert large["num_leaves_to_search"] == 75  # three quarters
    assert small["num_reordering_candidates"] == 50
    ml_25m = serving.scann_parameters(62_423)  # the leaves holding about 30,000 titles
    assert ml_25m["num_leaves"] == 250 and ml_25m["num_leaves_to_search"] == 121
    million = serving.scann_parameters(1_000_000)
    assert million["num_leaves"] == 1_000 and million["num_leaves_to_search"] == 30
    assert million["num_reordering_candidates"] == 1_000
