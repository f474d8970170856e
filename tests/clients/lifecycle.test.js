'use strict';
/*
 * GetCandy's published JavaScript client through the gateway, run by node's own test runner
 * (`node --test`, or `npm test`): the storefront lifecycle of checkout.js, one test per step, in
 * order. A step that fails stops the run: the steps after it are skipped, as each needs what the
 * ones before made. Environment: GATEWAY_URL, ADMIN_TOKEN, SUMMARY_FILE (README.md).
 */

const { test } = require('node:test');
const { Lifecycle } = require('./checkout');

const run = new Lifecycle(process.env);
let failed = null;

function step(name, action) {
  test(name, async (t) => {
    if (failed) {
      t.skip(`not run: the step "${failed}" failed`);
      return;
    }
    try {
      await action();
    } catch (error) {
      failed = name;
      throw error;
    }
  });
}

step('the currencies a storefront offers (getCurrencies)', async () => {
  run.start();
  await run.currencies();
});
step('set-up: a product of two variants and a coupon for it (admin, outside the client)', () => run.setUp());
step('browse the catalogue, one variant in the second currency', () => run.browse());
step('a basket of two lines, switched to the second currency', () => run.fillBasket());
step('a coupon on the basket, converted', () => run.coupon());
step('a basket without an order is deleted', () => run.discardBasket());
step('the United Kingdom from the countries', () => run.unitedKingdom());
step('the order: shipping address, billing address, contact, delivery in its currency', () => run.order());
step('payment: provider, types, process with the sandbox nonce', () => run.pay());
step('the placed order, its invoice, and no second order from its basket', () => run.confirm());
step('a signed-in customer: claim, current, resolve, checkout, order history', () => run.signedIn());
step("every answer as the client's typings declare it; the summary", () => run.finish());
