import numpy as np
import pytest

from components.example_gen import splits


def _u_data_users(seed: int = 0) -> np.ndarray:
    """User ids of a u.data-shaped file: 100,000 lines in random order, 943 users with at
    least 20 ratings each, heavy-tailed above that (as MovieLens 100k)."""
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.2, 943) + 0.01
    extra = rng.multinomial(100_000 - 943 * 20, weights / weights.sum())
    users = np.repeat(np.arange(1, 944), 20 + extra)
    return rng.permutation(users)


def test_the_five_folds_cut_u_data_in_consecutive_blocks_that_cover_it_once():
    users = _u_data_users()
    tests = [splits.canonical_test_lines(users, fold) for fold in splits.FOLDS]
    for index, test in enumerate(tests):
        assert test.sum() == 20_000 and (~test).sum() == 80_000
        assert np.flatnonzero(test).tolist() == list(range(index * 20_000, (index + 1) * 20_000))
    assert (np.sum(tests, axis=0) == 1).all()  # disjoint, and every line in one test set


def test_ua_and_ub_hold_out_each_users_first_and_second_ten_ratings_in_file_order():
    users = _u_data_users()
    ua, ub = (splits.canonical_test_lines(users, name) for name in ("ua", "ub"))
    assert ua.sum() == ub.sum() == 9_430 and (~ua).sum() == (~ub).sum() == 90_570
    assert not (ua & ub).any()
    for user in (1, 500, 943):
        lines = np.flatnonzero(users == user)
        assert ua[lines].tolist() == [True] * 10 + [False] * (len(lines) - 10)
        assert ub[lines].tolist() == [False] * 10 + [True] * 10 + [False] * (len(lines) - 20)


def test_canonical_keys_come_from_the_file_and_count_unseen_users_and_titles(tmp_path):
    lines = ["1\t10\t5\t100", "2\t20\t3\t200", "1\t30\t4\t300", "3\t10\t2\t400", "2\t10\t1\t500"]
    path = tmp_path / "u.data"
    path.write_text("\n".join(lines) + "\n")
    keys, counts = splits.canonical_eval_keys(str(path), "u1")  # line 1 (5 lines: blocks of 1)
    assert keys == {b"1|10"}
    assert counts == {"eval_ratings": 1, "eval_ratings_of_unseen_users": 0,
                      "eval_ratings_of_unseen_titles": 0}
    keys, counts = splits.canonical_eval_keys(str(path), "u4")
    assert keys == {b"3|10"} and counts["eval_ratings_of_unseen_users"] == 1
    path.write_text("\n".join(lines + lines[:1]) + "\n")
    with pytest.raises(splits.SplitProtocolError, match="rates some .user, movie. pair twice"):
        splits.canonical_eval_keys(str(path), "u1")
    with pytest.raises(splits.SplitProtocolError, match="does not exist"):
        splits.canonical_eval_keys(str(tmp_path / "missing" / "u.data"), "u1")


def test_time_cutoff_sends_ties_and_later_ratings_to_eval():
    times = np.array([5, 1, 3, 3, 9, 7, 3, 2, 8, 4])
    cutoff = splits.time_cutoff(times, 0.8)
    assert cutoff == 8
    assert (times >= cutoff).sum() == 2
    counts = splits.unseen_counts(np.array([1, 1, 2, 3]), np.array([5, 6, 5, 7]),
                                  np.array([False, True, False, True]))
    assert counts == {"eval_ratings": 2, "eval_ratings_of_unseen_users": 1,
                      "eval_ratings_of_unseen_titles": 2}


@pytest.mark.parametrize("text, expected", [
    ("random", "random"), ("time", "time:0.8"), ("time:0.9", "time:0.9"),
    ("canonical:u3", "canonical:u3"), ("canonical:ub", "canonical:ub")])
def test_protocols_parse_to_their_canonical_names(text, expected):
    assert str(splits.parse_protocol(text, 0.2, "movielens/100k-ratings")) == expected


@pytest.mark.parametrize("text, message", [
    ("shuffled", "Unknown split protocol 'shuffled'"),
    ("time:1.5", "quantile must be a number in \\(0, 1\\)"),
    ("time:late", "quantile must be a number"),
    ("canonical:u6", "Unknown split protocol 'canonical:u6'"),
    ("random:1", "Unknown split protocol"),
])
def test_bad_protocols_are_named(text, message):
    with pytest.raises(splits.SplitProtocolError, match=message):
        splits.parse_protocol(text, 0.2)


def test_canonical_splits_belong_to_movielens_100k():
    with pytest.raises(splits.SplitProtocolError, match="MovieLens 100k's own"):
        splits.parse_protocol("canonical:u1", 0.2, "movielens/1m-ratings")


def test_the_eval_fraction_is_capped_to_about_max_eval_ratings():
    assert splits.capped_eval_fraction(0.2, 100_000, 250_000) == 0.2
    assert splits.capped_eval_fraction(0.2, 1_250_000, 250_000) == 0.2
    assert splits.capped_eval_fraction(0.2, 25_000_000, 250_000) == 0.01
    assert splits.capped_eval_fraction(0.2, 25_000_000, None) == 0.2


def test_unseen_counts_take_string_ids_as_tensorflow_gives_them():
    users = np.array([b"1", b"1", b"2", b"3"], dtype=object)
    movies = np.array([b"5", b"6", b"5", b"7"], dtype=object)
    assert splits.unseen_counts(users, movies, np.array([False, True, False, True])) == {
        "eval_ratings": 2, "eval_ratings_of_unseen_users": 1,
        "eval_ratings_of_unseen_titles": 2}
