//! Small numeric helpers shared by the metrics.

/// Neumaier-compensated running sum: long cumulative sums (tens of millions of terms) keep full
/// `f64` precision instead of drifting by `n·ε`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct CompensatedSum {
    sum: f64,
    compensation: f64,
}

impl CompensatedSum {
    #[inline]
    pub(crate) fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    #[inline]
    pub(crate) fn value(&self) -> f64 {
        self.sum + self.compensation
    }
}

/// Trapezoid area of a polyline given as `(x, y)` points in order (NumPy's `trapezoid(y, x)`).
pub(crate) fn trapezoid(x: &[f64], y: &[f64]) -> f64 {
    let mut area = CompensatedSum::default();
    for i in 1..x.len() {
        area.add((x[i] - x[i - 1]) * (y[i] + y[i - 1]) / 2.0);
    }
    area.value()
}

/// Indices of `count` points spread evenly over `0..len`, always keeping the first and the last.
pub(crate) fn even_indices(len: usize, count: usize) -> Vec<usize> {
    if len <= count {
        return (0..len).collect();
    }
    if count < 2 {
        return (0..count).collect();
    }
    let mut indices: Vec<usize> =
        (0..count).map(|i| ((i as u128 * (len - 1) as u128) / (count - 1) as u128) as usize).collect();
    indices.dedup();
    indices
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compensated_sum_recovers_small_terms() {
        let mut s = CompensatedSum::default();
        s.add(1e16);
        for _ in 0..1000 {
            s.add(1.0);
        }
        s.add(-1e16);
        assert_eq!(s.value(), 1000.0);
    }

    #[test]
    fn even_indices_keep_ends() {
        assert_eq!(even_indices(10, 3), vec![0, 4, 9]);
        assert_eq!(even_indices(3, 10), vec![0, 1, 2]);
        assert_eq!(even_indices(0, 10), Vec::<usize>::new());
        assert_eq!(even_indices(5, 1), vec![0]);
    }
}
