// The buy/sell form. Each order carries an Idempotency-Key made when the form is armed; while
// a request is in flight the button is disabled and further submits are ignored, and a new key
// is made only after the answer: a double click trades once.

import { h } from '../dom.js';
import * as api from '../api.js';
import { money } from '../format.js';
import { field, clearErrors, showError, alertBox } from '../forms.js';

export function orderForm({ ctx, onTraded }) {
  let key = crypto.randomUUID();
  let inFlight = false;
  const submit = h('button', { type: 'submit', class: 'primary', dataset: { testid: 'order-submit' } }, 'Place order');
  const orderStatus = h('p', { class: 'status', role: 'status', 'aria-live': 'polite', dataset: { testid: 'order-status' } });
  const form = h('form', { novalidate: true, 'aria-labelledby': 'order-title' },
    alertBox(),
    field({ id: 'order-symbol', label: 'Symbol', autocomplete: 'off', attrs: { value: 'SPX', spellcheck: 'false' } }),
    field({ id: 'order-quantity', label: 'Quantity (shares)', type: 'number', autocomplete: 'off',
      attrs: { min: '1', max: '1000000', step: '1', value: '1', inputmode: 'numeric' } }),
    h('div', { class: 'field' },
      h('label', { for: 'order-side' }, 'Side'),
      h('select', { id: 'order-side', name: 'order-side' },
        h('option', { value: 'buy' }, 'Buy'), h('option', { value: 'sell' }, 'Sell')),
      h('p', { id: 'order-side-error', class: 'field-error' })),
    submit, orderStatus);

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    if (inFlight) return; // the second click of a double click
    clearErrors(form);
    const symbol = form.elements['order-symbol'].value.trim().toUpperCase();
    const quantity = Number(form.elements['order-quantity'].value);
    const side = form.elements['order-side'].value;
    inFlight = true;
    submit.disabled = true;
    form.setAttribute('aria-busy', 'true');
    orderStatus.textContent = `Placing the order: ${side} ${quantity} ${symbol}…`;
    try {
      const profile = await api.profile();
      const result = await api.post(`/api/users/${side}`,
        { user_id: profile.user_id, symbol, quantity }, { auth: true, headers: { 'Idempotency-Key': key } });
      if (!ctx.alive) return;
      orderStatus.textContent = `${side === 'buy' ? 'Bought' : 'Sold'} ${quantity} ${symbol}${result.price ? ` at ${money(result.price)}` : ''}.`;
      onTraded({ action: side, symbol, quantity, ...result });
    } catch (err) {
      if (!ctx.alive) return;
      orderStatus.textContent = 'The order was not placed.';
      showError(form, err, { symbol: 'order-symbol', quantity: 'order-quantity' });
    } finally {
      key = crypto.randomUUID(); // re-armed: the next order is a new one
      inFlight = false;
      submit.disabled = false;
      form.removeAttribute('aria-busy');
    }
  });

  return h('section', { class: 'card', 'aria-labelledby': 'order-title' },
    h('h2', { id: 'order-title' }, 'Buy or sell'), form);
}
