"""Multichannel AFM descriptors: families per channel, prefixed names, the channel's units."""

from __future__ import annotations

import numpy as np
import pytest
from corpus.files import shared_afm_files

from hybridtmd.descriptors import DescriptorExtractor, RegistryError, extract_descriptors, list_descriptors
from hybridtmd.io import AFMImage

CHANNELS = {"height": ["areal"], "phase": ["areal", "texture", "spectral"]}


def _phase(height: AFMImage, seed: int) -> AFMImage:
    """A phase map (degrees) of a height image: film contrast plus noise, in its own unit."""
    rng = np.random.default_rng(seed)
    z = height.height
    phase = AFMImage(12.0 * (z > np.median(z)) + rng.normal(0, 0.5, z.shape), height.pixel_size_nm, "Phase",
                     height.source)
    phase.z_unit = "deg"  # the readers set this for non-height channels
    return phase


@pytest.fixture(scope="module")
def scans(small_synthetic):
    return [{"Height": im, "Phase": _phase(im, k)} for k, im in enumerate(small_synthetic.images[:3])]


def test_families_per_channel_with_prefixed_names_and_channel_units(scans):
    ex = DescriptorExtractor(channels=CHANNELS, progress=False)
    table = ex.fit_transform(scans)
    names = list(table.columns)
    areal = list(list_descriptors("areal")["name"])
    assert names[: len(areal)] == areal  # height columns keep their names
    assert {"phase__sq", "phase__sa", "phase__sdq", "phase__glcm_contrast_d1px", "phase__sal_nm"} <= set(names)
    assert "phase__sq_nm" not in names
    assert ex.feature_units_["phase__sq"] == "deg" and ex.feature_units_["phase__sdq"] == "deg/nm"
    assert ex.feature_units_["sq_nm"] == "nm" and ex.feature_units_["phase__sal_nm"] == "nm"
    assert ex.feature_channels_["phase__sq"] == "phase"
    assert ex.feature_groups_["phase__texture"][0].startswith("phase__")
    # the height half equals the height-only extractor; the phase half is the unlevelled phase map
    height_only = DescriptorExtractor(families=["areal"], progress=False).fit_transform([s["Height"] for s in scans])
    np.testing.assert_array_equal(table[areal].to_numpy(), height_only.to_numpy())
    direct = extract_descriptors(scans[0]["Phase"], "areal", level_images=False)
    assert table.loc[0, "phase__sq"] == pytest.approx(direct["sq_nm"], rel=1e-12)
    # Sdr mixes lateral and vertical units: undefined for a phase map, with the reason
    _, reasons = ex.transform_with_reasons(scans[:1])
    why = dict(zip(reasons["feature"], reasons["reason"], strict=True))
    assert np.isnan(table.loc[0, "phase__sdr_pct"]) and "nm" in why["phase__sdr_pct"]


def test_missing_channel_gives_nan_with_reason_and_height_only_families_are_refused(scans):
    ex = DescriptorExtractor(channels=CHANNELS, progress=False).fit(scans)
    table, reasons = ex.transform_with_reasons([scans[0], {"Height": scans[1]["Height"]}, scans[2]["Height"]])
    phase_columns = [c for c in table.columns if c.startswith("phase__")]
    assert table.loc[1:, phase_columns].isna().all().all() and table.loc[0, "phase__sq"] > 0
    missing = reasons[(reasons["image"] == 1) & reasons["feature"].isin(phase_columns)]
    assert len(missing) == len(phase_columns) and missing["reason"].str.contains("no 'phase' channel").all()
    with pytest.raises(RegistryError, match="height maps only"):
        DescriptorExtractor(channels={"phase": ["grains"]}).fit(scans)
    with pytest.raises(ValueError, match="'channels' parameter"):
        DescriptorExtractor(channels={"ph ase": ["areal"]}).fit(scans)


def test_multichannel_bruker_file():
    import hybridtmd.io

    folder = shared_afm_files()
    if folder is None or not (folder / "di-3.di").is_file():
        pytest.skip("../shared/data/afm_files/di-3.di is absent")
    if not hasattr(hybridtmd.io, "load_channels"):
        pytest.skip("hybridtmd.io.load_channels (the multichannel readers) is not in this tree yet")
    channels = hybridtmd.io.load_channels(folder / "di-3.di")
    ex = DescriptorExtractor(channels={"height": ["areal"], "phase": ["areal", "texture"]}, progress=False)
    table = ex.fit_transform([channels])
    assert table[["sq_nm", "phase__sq", "phase__glcm_contrast_d1px"]].notna().all().all()
    assert ex.feature_units_["phase__sq"] != "nm"
