"""Key names of a snapshot's entities: built and parsed in one place."""
from lovely_gae.snapshot import names


def test_a_range_name_gives_back_its_position_and_no_other_kinds():
    name = names.range_name(7, 'A', 12, 3456)
    assert name == 'RB:7:A:0000000012:3456'
    assert names.range_position(name, names.range_prefix(7, 'A')) == 12
    # Kind ``A``'s prefix is also the start of kind ``A:0000000001``'s.
    other = names.range_name(7, 'A:0000000001', 3, 10)
    assert names.range_position(other, names.range_prefix(7, 'A')) is None


def test_every_name_of_a_snapshot_starts_with_its_tag_and_id():
    built = [names.range_name(7, 'K', 0, 1),
             names.part_name(7, 'K', 0, 'tok', 1),
             names.markers_name(7, 'K', 0, 0),
             names.shards_name(7, 'K'),
             names.progress_name(7, 'K', 0)]
    assert [name.split(':', 2)[:2] for name in built] == [
        [tag, '7'] for tag in names.TAGS]
    assert all(name.startswith(names.of_snapshot(tag, 7))
               for name, tag in zip(built, names.TAGS))
    assert not names.range_name(70, 'K', 0, 1).startswith(
        names.of_snapshot(names.RANGE, 7))
