use super::test_support::*;
use super::*;

#[test]
fn valid_inputs() {
    for (x, price, size) in [
        (1.0, true, true),
        (0.0, false, true),
        (-0.0, false, true),
        (-1.0, false, false),
        (f64::NAN, false, false),
        (f64::INFINITY, false, false),
        (f64::NEG_INFINITY, false, false),
        (f64::MIN_POSITIVE, true, true),
        (f64::MAX, true, true),
    ] {
        assert_eq!(valid_price(x), price, "valid_price({x})");
        assert_eq!(valid_size(x), size, "valid_size({x})");
    }
}

fn one_each(sma: usize, ema: usize, rsi: usize, volatility: usize) -> IndicatorPeriods {
    IndicatorPeriods {
        sma: vec![sma],
        ema: vec![ema],
        rsi: vec![rsi],
        volatility: vec![volatility],
    }
}

#[test]
fn config_validation() {
    assert_eq!(IndicatorPeriods::default().validate(), Ok(()));
    let min = one_each(1, 1, 1, 3);
    assert_eq!(min.validate(), Ok(()));
    assert!(IndicatorSet::new(&min).is_ok());
    let max = one_each(MAX_PERIOD, MAX_PERIOD, MAX_PERIOD, MAX_PERIOD);
    assert_eq!(max.validate(), Ok(()));
    let with = |f: fn(&mut IndicatorPeriods)| {
        let mut p = min.clone();
        f(&mut p);
        p
    };
    for (cfg, indicator, message) in [
        (
            with(|p| p.sma = vec![0]),
            "sma",
            "sma period must be at least 1, got 0",
        ),
        (
            with(|p| p.ema = vec![5, 0]),
            "ema",
            "ema period must be at least 1, got 0",
        ),
        (
            with(|p| p.rsi = vec![0]),
            "rsi",
            "rsi period must be at least 1, got 0",
        ),
        (
            with(|p| p.volatility = vec![2]),
            "volatility",
            "volatility period must be at least 3, got 2",
        ),
        (
            with(|p| p.sma = vec![20, MAX_PERIOD + 1]),
            "sma",
            "sma period must be at most 10000, got 10001",
        ),
        (
            with(|p| p.rsi = vec![]),
            "rsi",
            "rsi needs at least one period, got an empty list",
        ),
        (
            with(|p| p.sma = vec![20, 50, 20]),
            "sma",
            "sma period 20 is listed twice",
        ),
        (
            with(|p| p.ema = (1..=9).collect()),
            "ema",
            "ema takes at most 8 periods, got 9",
        ),
    ] {
        let err = cfg.validate().expect_err("refused");
        assert_eq!(err.indicator(), indicator);
        assert_eq!(err.to_string(), message);
        assert_eq!(IndicatorSet::new(&cfg).err(), Some(err));
    }
}

#[test]
fn several_periods_each_match_their_single_indicator() {
    let cfg = IndicatorPeriods {
        sma: vec![3, 5, 8],
        ema: vec![4, 2],
        rsi: vec![3],
        volatility: vec![5, 3],
    };
    let mut set = IndicatorSet::new(&cfg).expect("valid");
    let mut smas: Vec<Sma> = cfg
        .sma
        .iter()
        .map(|&n| Sma::new(n).expect("valid"))
        .collect();
    let mut emas: Vec<Ema> = cfg
        .ema
        .iter()
        .map(|&n| Ema::new(n).expect("valid"))
        .collect();
    let mut rsi = Rsi::new(3).expect("valid");
    let mut vols: Vec<Volatility> = cfg
        .volatility
        .iter()
        .map(|&n| Volatility::new(n).expect("valid"))
        .collect();
    for &p in &series_200()[..40] {
        assert!(set.on_bar_close(p));
        smas.iter_mut().for_each(|i| i.update(p));
        emas.iter_mut().for_each(|i| i.update(p));
        rsi.update(p);
        vols.iter_mut().for_each(|i| i.update(p));
        let want: Vec<Option<f64>> = smas
            .iter()
            .map(Sma::value)
            .chain(emas.iter().map(Ema::value))
            .chain([rsi.value()])
            .chain(vols.iter().map(Volatility::value))
            .collect();
        assert_eq!(set.periodic(), want);
        assert_eq!(set.periodic().len(), cfg.len());
    }
}

#[test]
fn compensated_sum_survives_cancellation() {
    // 1e16 + 1 - 1e16 is 0 in plain f64 (1 is below half an ulp of 1e16); compensated it is 1.
    let mut s = CompensatedSum::default();
    for x in [1e16, 1.0, -1e16] {
        s.add(x);
    }
    assert_eq!(s.value(), 1.0);
}

#[test]
fn set_warms_up_and_matches_single_indicators() {
    let cfg = IndicatorPeriods::default();
    let mut set = IndicatorSet::new(&cfg).expect("default config is valid");
    assert_eq!(
        set.snapshot(),
        IndicatorValues {
            periodic: vec![None; 4],
            ..IndicatorValues::default()
        }
    );
    let (mut sma, mut ema, mut rsi, mut vol, mut vwap) = (
        Sma::new(cfg.sma[0]).expect("valid"),
        Ema::new(cfg.ema[0]).expect("valid"),
        Rsi::new(cfg.rsi[0]).expect("valid"),
        Volatility::new(cfg.volatility[0]).expect("valid"),
        Vwap::new(),
    );
    for (i, &p) in series_200().iter().enumerate() {
        let size = (i % 7) as f64 * 10.0;
        assert!(set.on_tick(p, size));
        assert!(set.on_bar_close(p));
        sma.update(p);
        ema.update(p);
        rsi.update(p);
        vol.update(p);
        vwap.update(p, size);
        let snap = set.snapshot();
        let [s, e, r, v] = snap.periodic[..] else {
            panic!("four values: {:?}", snap.periodic)
        };
        assert_eq!(s, sma.value());
        assert_eq!(e, ema.value());
        assert_eq!(r, rsi.value());
        assert_eq!(v, vol.value());
        assert_eq!(snap.vwap, vwap.value());
        // Warm-up boundaries of the default periods (i is 0-based).
        assert_eq!(s.is_some(), i + 1 >= 20);
        assert_eq!(e.is_some(), i + 1 >= 20);
        assert_eq!(r.is_some(), i + 1 >= 15);
        assert_eq!(v.is_some(), i + 1 >= 20);
        assert_eq!(snap.vwap.is_some(), i >= 1); // the first tick has size 0
    }
    set.reset_session();
    let snap = set.snapshot();
    assert_eq!(snap.vwap, None);
    assert!(
        snap.periodic.iter().all(Option::is_some),
        "bar history survives a session reset"
    );
}

#[test]
#[cfg(debug_assertions)]
fn leaf_updates_assert_valid_input_in_debug_builds() {
    use std::panic::catch_unwind;
    assert!(catch_unwind(|| Sma::new(3).map(|mut i| i.update(f64::NAN))).is_err());
    assert!(catch_unwind(|| Ema::new(3).map(|mut i| i.update(0.0))).is_err());
    assert!(catch_unwind(|| Rsi::new(3).map(|mut i| i.update(-1.0))).is_err());
    assert!(catch_unwind(|| Volatility::new(3).map(|mut i| i.update(f64::INFINITY))).is_err());
    assert!(catch_unwind(|| Vwap::new().update(1.0, -1.0)).is_err());
}

#[test]
fn set_rejects_invalid_input_without_touching_state() {
    let mut set = IndicatorSet::new(&one_each(1, 1, 1, 3)).expect("valid");
    assert!(set.on_tick(10.0, 2.0));
    assert!(set.on_bar_close(10.0));
    let before = set.snapshot();
    for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
        assert!(!set.on_bar_close(bad));
        assert!(!set.on_tick(bad, 1.0));
    }
    assert!(!set.on_tick(10.0, f64::NAN));
    assert!(!set.on_tick(10.0, -1.0));
    assert_eq!(set.snapshot(), before);
}
